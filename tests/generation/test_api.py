import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import GenerationBatch, PromptSet
from tests import factories as f

pytestmark = pytest.mark.django_db


def _prompt_set(client, name="set", content="a cat\na dog\n"):
    response = client.post(
        "/api/prompt-sets/import/", {"name": name, "content": content}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()["prompt_set"]["id"]


def test_prompt_set_import_by_upload(api, curator):
    client = api(curator)
    upload = SimpleUploadedFile("p.csv", b"text,tags\na cat,animal\na cat,animal\n")
    response = client.post("/api/prompt-sets/import/", {"name": "up", "file": upload})
    assert response.status_code == 201
    body = response.json()
    assert body["imported"] == 1
    assert body["duplicates"] == [{"line": 3, "first_line": 2, "text": "a cat"}]
    detail = client.get(f"/api/prompt-sets/{body['prompt_set']['id']}/").json()
    assert [(p["text"], p["tags"]) for p in detail["prompts"]] == [("a cat", ["animal"])]


def test_empty_prompt_set_upload_is_400(api, curator):
    response = api(curator).post(
        "/api/prompt-sets/import/", {"name": "e", "content": "\n\n"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"file": ["The file holds no prompts."]}
    assert PromptSet.objects.count() == 0


def test_sticker_batch_create(api, curator, models, django_capture_on_commit_callbacks):
    client = api(curator)
    set_id = _prompt_set(client)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            "/api/batches/create/",
            {
                "kind": "sticker",
                "prompt_set": set_id,
                "model_versions": [models["sticker-base"].pk],
                "seeds": [1, 2, 3],
                "params": {"num_inference_steps": 4},
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["total"] == 6
    assert body["status"] == "queued"
    assert body["params"] == {
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "width": 64,
        "height": 64,
        "negative_prompt": "",
    }
    assert len(callbacks) == 1  # planning is queued after commit


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"params": {"num_inference_steps": 0}},
            {"params.num_inference_steps": ["Must be between 1 and 200, not 0."]},
        ),
        (
            {"params": {"guidance_scale": 31}},
            {"params.guidance_scale": ["Must be between 0.0 and 30.0, not 31.0."]},
        ),
        ({"params": {"width": 100}}, {"params.width": ["Must be divisible by 8, not 100."]}),
        (
            {"params": {"height": 2048}},
            {"params.height": ["Must be between 64 and 1024, not 2048."]},
        ),
        (
            {"params": {"num_frames": 8}},
            {"params.num_frames": ["Unknown parameter for a sticker batch."]},
        ),
        ({"seeds": []}, {"seeds": ["Give at least one seed."]}),
        ({"seeds": [1, 1]}, {"seeds": ["Seeds must not repeat."]}),
        ({"seeds": [-1]}, {"seeds": ["Seeds must be integers from 0 to 4294967295."]}),
        (
            {"model_versions": [999999]},
            {"model_versions": ['Invalid pk "999999" - object does not exist.']},
        ),
        (
            {"model_versions": "anim"},
            {"model_versions": ["Model version(s) anim-teacher-a are not image models."]},
        ),
        ({"prompt_set": None}, {"prompt_set": ["A sticker batch needs a prompt set."]}),
    ],
)
def test_bad_batch_is_400_and_stores_nothing(
    api, curator, models, change, expected, django_capture_on_commit_callbacks
):
    client = api(curator)
    payload = {
        "kind": "sticker",
        "prompt_set": _prompt_set(client),
        "model_versions": [models["sticker-base"].pk],
        "seeds": [1],
        "params": {},
    }
    if change.get("model_versions") == "anim":
        change = {"model_versions": [models["anim-teacher-a"].pk]}
    payload.update(change)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/api/batches/create/", payload, format="json")
    assert response.status_code == 400
    assert response.json() == expected
    assert GenerationBatch.objects.count() == 0
    assert callbacks == []


def test_prompt_over_token_limit_is_400(api, curator, models):
    client = api(curator)
    # The tiny tokenizer is byte-level: every character is a token, so 100 characters is over 77.
    set_id = _prompt_set(client, content="a" * 100 + "\nfine\n")
    response = client.post(
        "/api/batches/create/",
        {
            "kind": "sticker",
            "prompt_set": set_id,
            "model_versions": [models["sticker-base"].pk],
            "seeds": [1],
        },
        format="json",
    )
    assert response.status_code == 400
    [message] = response.json()["prompt_set"]
    assert message.startswith("1 prompt(s) exceed the 77-token limit of sticker-base")
    assert GenerationBatch.objects.count() == 0


def test_empty_prompt_set_batch_is_400(api, curator, models):
    empty = PromptSet.objects.create(name="empty")
    response = api(curator).post(
        "/api/batches/create/",
        {
            "kind": "sticker",
            "prompt_set": empty.pk,
            "model_versions": [models["sticker-base"].pk],
            "seeds": [1],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"prompt_set": ["Prompt set 'empty' is empty."]}


def test_animation_source_must_be_a_sticker(api, curator, models):
    animation = f.animation(
        source=f.sticker(version=models["sticker-base"]), version=models["anim-teacher-a"]
    )
    response = api(curator).post(
        "/api/batches/create/",
        {
            "kind": "animation",
            "sources": [animation.pk],
            "model_versions": [models["anim-teacher-a"].pk],
            "seeds": [1],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "sources": [f"Candidate(s) {animation.pk} are not sticker candidates."]
    }
    assert GenerationBatch.objects.count() == 0


def test_register_model_version_checks_the_folder(api, engineer, tmp_path):
    response = api(engineer).post(
        "/api/model-versions/register/",
        {"name": "nothing", "kind": "image", "uri": str(tmp_path / "nope")},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "uri": [f"No diffusers model at {tmp_path / 'nope'}: model_index.json is missing."]
    }


def test_register_model_version_reads_token_limit(api, engineer, tiny_models_root):
    response = api(engineer).post(
        "/api/model-versions/register/",
        {
            "name": "copy",
            "kind": "image",
            "role": "finetuned",
            "uri": str(tiny_models_root / "sticker-base"),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["max_prompt_tokens"] == 77


def test_candidate_filters(api, curator, models):
    client = api(curator)
    set_id = _prompt_set(client, content="a cat\n")
    prompt = PromptSet.objects.get(pk=set_id).prompts.get()
    base = models["sticker-base"]
    for seed in (1, 2):
        f.sticker(version=base, on_prompt=prompt, seed=seed)
    body = client.get(f"/api/candidates/?prompt={prompt.pk}&kind=sticker").json()
    assert body["count"] == 2
    assert [c["seed"] for c in body["results"]] == [1, 2]
    assert client.get("/api/candidates/?kind=animation").json()["count"] == 0
    assert client.get("/api/candidates/?kind=bogus").status_code == 400


def test_animation_strength_that_leaves_no_step_is_400(api, curator, models):
    source = f.sticker(version=models["sticker-base"])
    response = api(curator).post(
        "/api/batches/create/",
        {
            "kind": "animation",
            "sources": [source.pk],
            "model_versions": [models["anim-teacher-a"].pk],
            "seeds": [1],
            "params": {"num_inference_steps": 4, "strength": 0.2},
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "params.strength": ["With 4 steps, strength 0.2 leaves no denoising step; raise either."]
    }
    assert GenerationBatch.objects.count() == 0
