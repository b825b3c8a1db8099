import pytest
from django.core.management import call_command

from generation.models import GenerationBatch, PromptSet
from generation.services.batches import generation_batch_create
from generation.services.prompts import prompt_set_import
from generation.world.sampling import prompts as sampling_prompts
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_gallery_escapes_prompts_and_shows_checkerboard(client, curator, models):
    f.sticker(version=models["sticker-base"], text="<script>alert(1)</script> a cat")
    client.force_login(curator)
    html = client.get("/candidates/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a cat" in html
    assert "<script>alert(1)" not in html
    assert 'class="gallery bg-checker"' in html
    assert 'class="gallery bg-dark"' in client.get("/candidates/?bg=dark").content.decode()


def test_animation_is_shown_beside_its_source(client, curator, models):
    source = f.sticker(version=models["sticker-base"], text="a cat")
    animation = f.animation(source=source, version=models["anim-teacher-a"], motion_score=0.125)
    client.force_login(curator)
    html = client.get("/candidates/?kind=animation").content.decode()
    assert f'alt="source sticker {source.pk}"' in html
    assert f'alt="animation {animation.pk}"' in html
    assert "motion 0.125" in html


def test_batch_list_and_detail(client, curator, models):
    prompt_set, _ = prompt_set_import(name="b", content="a cat\n", file_format="text")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[1],
        params={},
        name="first",
    )
    client.force_login(curator)
    listing = client.get("/batches/").content.decode()
    assert f'data-batch="{batch.pk}" data-finished="0"' in listing
    detail = client.get(f"/batches/{batch.pk}/").content.decode()
    assert "0 of 1 stored" in detail
    progress = client.get(f"/api/batches/progress/?ids={batch.pk}").json()
    assert progress == [
        {
            "id": batch.pk,
            "status": "queued",
            "total": 1,
            "done_count": 0,
            "failed_count": 0,
            "error": "",
        }
    ]
    assert client.get("/api/batches/progress/?ids=x").status_code == 400


def test_media_needs_a_staff_role_and_serves_files(client, rater, curator, settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save("candidates/a.png", ContentFile(b"\x89PNG..."))
    assert client.get("/media/candidates/a.png").status_code == 302
    client.force_login(rater)
    assert client.get("/media/candidates/a.png").status_code == 404
    client.force_login(curator)
    response = client.get("/media/candidates/a.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG..."
    assert client.get("/media/candidates/../secret").status_code == 404


def test_demo_setup_creates_role_users_and_a_first_batch(models, capsys):
    call_command("demo_setup")
    out = capsys.readouterr().out
    assert "curator   / stickerloop-demo   roles: curator" in out
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.order_by("username")
    assert [(u.username, sorted(u.groups.values_list("name", flat=True))) for u in users] == [
        ("admin", ["admin", "curator", "ml_engineer", "rater"]),
        ("curator", ["curator"]),
        ("engineer", ["ml_engineer"]),
        ("rater", ["rater"]),
        ("rater2", ["rater"]),
    ]
    batch = GenerationBatch.objects.get()
    assert (batch.total, batch.kind, batch.status, batch.done_count) == (
        24,
        "sticker",
        "succeeded",
        24,
    )
    from annotation.models import Campaign
    from generation.world.captions import parse

    prompts = list(batch.prompt_set.prompts.order_by("position").values_list("text", flat=True))
    assert len(prompts) == 12
    assert all(parse(text)["subject"] and parse(text)["colour"] for text in prompts)
    held_out = PromptSet.objects.get(is_held_out=True)
    texts = list(held_out.prompts.order_by("position").values_list("text", flat=True))
    assert (held_out.name, len(texts)) == ("Demo held-out prompts", 16)
    assert texts == [p.text for p in sampling_prompts("heldout", 16)]
    assert "Created held-out prompt set" in out and "(16 prompts)" in out
    assert not batch.prompt_set.is_held_out
    # what a training job's evaluation uses by default
    from training_bridge.jobs.evaluation import evaluation_prompt_set_default

    assert evaluation_prompt_set_default() == held_out
    campaign = Campaign.objects.get()
    assert (campaign.name, campaign.status, campaign.kind, campaign.overlap) == (
        "Demo: alignment and style",
        "running",
        "single",
        2,
    )
    assert [q["key"] for q in campaign.question_schema] == [
        "aligned",
        "missing",
        "style_pass",
        "defects",
        "note",
    ]
    assert campaign.items.count() == 24
    assert sorted(campaign.memberships.values_list("rater__username", flat=True)) == [
        "admin",
        "rater",
        "rater2",
    ]
    call_command("demo_setup")  # idempotent
    assert GenerationBatch.objects.count() == 1
    assert Campaign.objects.count() == 1
    assert PromptSet.objects.filter(is_held_out=True).count() == 1


def test_demo_setup_refuses_production(settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refuses production"):
        call_command("demo_setup")


def test_prompt_set_upload_page(client, curator):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(curator)
    upload = SimpleUploadedFile("p.txt", b"a cat\n\na cat\na dog\n")
    html = client.post("/prompt-sets/", {"name": "page", "file": upload}).content.decode()
    assert "Imported 2 prompts; 1 duplicate(s) skipped (lines 3); 1 empty line(s) skipped." in html
    assert list(PromptSet.objects.get(name="page").prompts.values_list("text", flat=True)) == [
        "a cat",
        "a dog",
    ]
    empty = SimpleUploadedFile("e.txt", b"\n")
    html = client.post("/prompt-sets/", {"name": "empty", "file": empty}).content.decode()
    assert "<strong>file</strong>: The file holds no prompts." in html
    assert not PromptSet.objects.filter(name="empty").exists()


def test_batch_create_page(client, curator, models, django_capture_on_commit_callbacks):
    prompt_set, _ = prompt_set_import(name="f", content="a cat\n", file_format="text")
    client.force_login(curator)
    assert client.get("/batches/new/").status_code == 200
    bad = client.post(
        "/batches/new/",
        {
            "prompt_set": prompt_set.pk,
            "model_versions": [models["sticker-base"].pk],
            "seeds": "1 2",
            "num_inference_steps": "500",
        },
    ).content.decode()
    assert "<strong>params.num_inference_steps</strong>: Must be between 1 and 200, not 500." in bad
    assert GenerationBatch.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/batches/new/",
            {
                "prompt_set": prompt_set.pk,
                "model_versions": [models["sticker-base"].pk],
                "seeds": "1, 2",
                "num_inference_steps": "4",
            },
        )
    batch = GenerationBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/batches/{batch.pk}/"
    assert (batch.total, batch.seeds, batch.params["num_inference_steps"]) == (2, [1, 2], 4)
    assert len(callbacks) == 1


def test_the_batch_page_live_part_follows_the_batch_until_it_ends(client, curator, models):
    prompt_set, _ = prompt_set_import(name="b", content="a cat\n", file_format="text")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[1],
        params={},
    )
    client.force_login(curator)
    page = client.get(f"/batches/{batch.pk}/").content.decode()
    assert f'src="/static/js/live.js" data-url="/batches/{batch.pk}/live/"' in page
    live = client.get(f"/batches/{batch.pk}/live/").content.decode()
    assert live.startswith('<div id="live" data-finished="0">')
    assert '<dd class="status status-queued">queued</dd>' in live
    assert "0 of 1 stored; chunks 0 / 0" in live and "<p>None yet.</p>" in live

    # when a candidate is stored and the batch ends
    candidate = f.sticker(
        version=models["sticker-base"], on_prompt=prompt_set.prompts.get(), seed=1, batch=batch
    )
    GenerationBatch.objects.filter(pk=batch.pk).update(status="succeeded", done_count=1)

    live = client.get(f"/batches/{batch.pk}/live/").content.decode()
    assert live.startswith('<div id="live" data-finished="1">')
    assert '<dd class="status status-succeeded">succeeded</dd>' in live
    assert '<div class="bar" data-percent="100"></div>' in live
    assert "1 of 1 stored; chunks 0 / 0" in live and f'data-candidate="{candidate.pk}"' in live
    assert client.get("/batches/999999/live/").status_code == 404
