"""Search and status filters on the campaign and batch lists (stickerloop.list_filters)."""

import re

import pytest
from django.utils import timezone

from annotation.models import Campaign
from generation.models import GenerationBatch
from tests import factories as f
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import TrainingJob
from training_bridge.models import DatasetRule, DatasetVersion

pytestmark = pytest.mark.django_db


def _rows(html: str, key: str) -> list[int]:
    return [int(pk) for pk in re.findall(rf'<tr data-{key}="(\d+)"', html)]


def test_the_campaign_list_searches_names_and_ids_and_filters_by_status(site, curator):
    cats = f.campaign(questions=f.BINARY_SCHEMA, name="Cats alignment")
    dogs = f.campaign(questions=f.BINARY_SCHEMA, name="dogs style")
    closed = f.campaign(questions=f.BINARY_SCHEMA, name="old cats")
    Campaign.objects.filter(pk=closed.pk).update(status="closed")
    client = site(curator)

    def listed(query: str) -> list[int]:
        response = client.get(f"/campaigns/?{query}")
        assert response.status_code == 200
        return _rows(response.content.decode(), "campaign")

    assert listed("") == [closed.pk, dogs.pk, cats.pk]
    assert listed("q=CATS") == [closed.pk, cats.pk]
    assert listed("q=cats&status=running") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert listed("status=closed") == [closed.pk]
    html = client.get("/campaigns/?q=zebra").content.decode()
    assert "No campaign matches these filters." in html
    assert 'value="zebra"' in html


def test_the_batch_list_filters_and_refuses_an_unknown_status(site, curator):
    first = GenerationBatch.objects.create(kind="sticker", seeds=[1], name="first cats")
    second = GenerationBatch.objects.create(
        kind="sticker", seeds=[1], name="second", status="failed"
    )
    client = site(curator)
    html = client.get("/batches/?status=failed").content.decode()
    assert _rows(html, "batch") == [second.pk]
    assert '<option value="failed" selected>failed</option>' in html
    assert _rows(client.get("/batches/?q=cats").content.decode(), "batch") == [first.pk]

    response = client.get("/batches/?status=done&q=cats")
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        '<span class="error" id="error-status">Status: &#x27;done&#x27; is none of queued, '
        "running, succeeded, partial, failed, cancelled.</span>"
    ) in html
    # the search typed stays in its box; the list is not filtered by a refused query
    assert 'value="cats"' in html
    assert _rows(html, "batch") == [second.pk, first.pk]
    response = client.get("/campaigns/?q=" + "x" * 201)
    assert response.status_code == 400
    assert "Search: at most 200 characters, not 201." in response.content.decode()


def test_the_job_list_searches_and_refuses_an_unknown_recipe(site, engineer, models):
    version = f.dataset_version(models, purpose="alignment")
    jobs = [
        training_job_create(
            recipe="finetune",
            base_model_version=models["sticker-base"],
            datasets={"train": version},
            params={"max_train_steps": 4, "train_batch_size": 2},
            evaluate=False,
            name=name,
        )
        for name in ["cats run", "dogs run"]
    ]
    TrainingJob.objects.filter(pk=jobs[1].pk).update(status="failed", error="boom")
    client = site(engineer)
    assert _rows(client.get("/training/jobs/?q=CATS").content.decode(), "job") == [jobs[0].pk]
    html = client.get("/training/jobs/?status=failed&recipe=finetune").content.decode()
    assert _rows(html, "job") == [jobs[1].pk]
    assert _rows(client.get("/training/jobs/?recipe=distill_student").content.decode(), "job") == []

    response = client.get("/training/jobs/?recipe=magic")
    assert response.status_code == 400
    html = response.content.decode()
    assert '<span class="error" id="error-recipe">Recipe: &#x27;magic&#x27; is none of ' in html
    assert _rows(html, "job") == [jobs[1].pk, jobs[0].pk]


def test_the_model_list_searches_names_and_pages(site, engineer, models):
    client = site(engineer)
    html = client.get("/models/?q=ANIM&status=ignored").content.decode()
    names = re.findall(r'<tr data-model-version="\d+"><td><a href="[^"]+">([^<]+)</a>', html)
    assert names == sorted(name for name in models if "anim" in name)
    assert 'name="status"' not in html
    assert "No model version matches this search." in client.get("/models/?q=zzz").content.decode()


def test_the_dataset_version_list_searches_rule_names_and_ids_and_filters(site, curator):
    # given two rules' versions: "cats" (v1 retired, v2 published) and "dogs" (v1 draft)
    def version(rule, number, status):
        return DatasetVersion.objects.create(
            rule=rule,
            number=number,
            purpose=rule.purpose,
            kind="image",
            status=status,
            published_at=timezone.now() if status == "published" else None,
            rule_snapshot={},
            manifest_sha256=f"{rule.pk:032d}{number:032d}",
            entry_count=1,
            train_count=1,
            validation_count=0,
        )

    cats = DatasetRule.objects.create(name="Cats aligned", purpose="alignment", kind="image")
    dogs = DatasetRule.objects.create(name="dogs style", purpose="style", kind="image")
    cats1, cats2 = version(cats, 1, "retired"), version(cats, 2, "published")
    dogs1 = version(dogs, 1, "draft")
    client = site(curator)

    def listed(query: str) -> list[int]:
        response = client.get(f"/datasets/versions/?{query}")
        assert response.status_code == 200
        return _rows(response.content.decode(), "version")

    # then
    assert listed("") == [dogs1.pk, cats2.pk, cats1.pk]
    assert listed("q=CATS") == [cats2.pk, cats1.pk]
    assert listed("q=cats&status=published") == [cats2.pk]
    assert listed(f"q={dogs1.pk}") == [dogs1.pk]
    assert listed("purpose=style") == [dogs1.pk]
    html = client.get("/datasets/versions/?q=zebra").content.decode()
    assert "No version matches these filters." in html
    assert 'value="zebra"' in html
    # an unknown purpose is a 400 naming it, and the list stays unfiltered
    response = client.get("/datasets/versions/?purpose=fun&q=cats")
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        '<span class="error" id="error-purpose">Purpose: &#x27;fun&#x27; is none of alignment, '
        "style, motion, teacher_selection, weak, evaluation.</span>"
    ) in html
    assert _rows(html, "version") == [dogs1.pk, cats2.pk, cats1.pk]
