"""Search and status filters on the list pages (stickerloop.list_filters)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotation.models import Campaign
from generation.models import GenerationBatch
from generation.services.enhancers import prompt_enhancer_create
from tests import factories as f
from training_bridge.experiments.models import Experiment
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import TrainingJob
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion
from training_bridge.pipelines.models import Pipeline
from training_bridge.weak_imports import weak_source_create
from webhooks.models import Endpoint

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


def _version(rule, number, status):
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


def test_the_dataset_version_list_searches_rule_names_and_ids_and_filters(site, curator):
    # given two rules' versions: "cats" (v1 retired, v2 published) and "dogs" (v1 draft)
    version = _version

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


def _refused(client, url: str, *, statuses: str | None) -> None:
    """An overlong search, and an unknown status on a list whose rows have one, answer 400
    with the field's message; a list without statuses ignores ``status``."""
    response = client.get(f"{url}?q=" + "x" * 201)
    assert response.status_code == 400
    assert (
        '<span class="error" id="error-q">Search: at most 200 characters, not 201.</span>'
    ) in response.content.decode()
    response = client.get(f"{url}?status=done")
    if statuses is None:
        assert response.status_code == 200
        assert 'name="status"' not in response.content.decode()
        return
    assert response.status_code == 400
    assert (
        f'<span class="error" id="error-status">Status: &#x27;done&#x27; is none of {statuses}.'
        "</span>"
    ) in response.content.decode()


def _lister(client, url: str, key: str):
    def listed(query: str) -> list[int]:
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200
        return _rows(response.content.decode(), key)

    return listed


def test_the_prompt_set_list_searches_names_and_ids(site, curator):
    cats = f.prompt_set(["a cat"], name="Cats held out", held_out=True)
    dogs = f.prompt_set(["a dog"], name="dogs")
    client = site(curator)
    listed = _lister(client, "/prompt-sets/", "prompt-set")

    assert listed("") == [dogs.pk, cats.pk]
    assert listed("q=CATS") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    html = client.get("/prompt-sets/?q=zebra").content.decode()
    assert "No prompt set matches this search." in html
    assert 'value="zebra"' in html
    _refused(client, "/prompt-sets/", statuses=None)


def test_the_prompt_enhancer_list_searches_names_and_ids(site, curator):
    cats, dogs = (
        prompt_enhancer_create(name=name, kind="template", template="{prompt}, sticker")
        for name in ["Cats-flair", "dogs-flair"]
    )
    client = site(curator)
    listed = _lister(client, "/prompt-enhancers/", "enhancer")

    assert listed("") == [cats.pk, dogs.pk]
    assert listed("q=cats") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert (
        "No enhancer matches this search."
        in client.get("/prompt-enhancers/?q=zebra").content.decode()
    )
    _refused(client, "/prompt-enhancers/", statuses=None)


def test_the_rule_list_searches_names_and_ids(site, curator):
    cats = DatasetRule.objects.create(name="Cats aligned", purpose="alignment", kind="image")
    dogs = DatasetRule.objects.create(name="dogs style", purpose="style", kind="image")
    client = site(curator)
    listed = _lister(client, "/datasets/", "rule")

    assert listed("") == [cats.pk, dogs.pk]
    assert listed("q=ALIGNED") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert "No rule matches this search." in client.get("/datasets/?q=zebra").content.decode()
    _refused(client, "/datasets/", statuses=None)


def test_the_export_list_searches_rule_names_and_ids_and_filters_by_status(site, curator):
    cats = _version(
        DatasetRule.objects.create(name="Cats", purpose="alignment", kind="image"), 1, "published"
    )
    dogs = _version(
        DatasetRule.objects.create(name="dogs", purpose="style", kind="image"), 1, "published"
    )
    cats_parquet = DatasetExport.objects.create(version=cats, format="parquet")
    cats_failed = DatasetExport.objects.create(
        version=cats, format="imagefolder", status="failed", error="boom"
    )
    dogs_parquet = DatasetExport.objects.create(version=dogs, format="parquet")
    client = site(curator)

    for url in ["/datasets/exports/", "/datasets/exports/live/"]:
        listed = _lister(client, url, "export")
        assert listed("") == [dogs_parquet.pk, cats_failed.pk, cats_parquet.pk]
        assert listed("q=cats") == [cats_failed.pk, cats_parquet.pk]
        assert listed("q=cats&status=queued") == [cats_parquet.pk]
        assert listed(f"q={dogs_parquet.pk}") == [dogs_parquet.pk]
    html = client.get("/datasets/exports/?q=zebra").content.decode()
    assert "No export matches these filters." in html
    # the page polls its rows under the same query
    assert 'data-url="/datasets/exports/live/?q=zebra"' in html
    _refused(client, "/datasets/exports/", statuses="queued, running, succeeded, failed")


def test_the_weak_source_list_searches_names_and_ids(site, curator):
    cats, dogs = (
        weak_source_create(name=name, kind="image", created_by=curator)
        for name in ["Cats-corpus", "dogs-corpus"]
    )
    client = site(curator)
    listed = _lister(client, "/datasets/weak-sources/", "weak-source")

    assert listed("") == [cats.pk, dogs.pk]
    assert listed("q=CATS") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert (
        "No weak corpus matches this search."
        in client.get("/datasets/weak-sources/?q=zebra").content.decode()
    )
    _refused(client, "/datasets/weak-sources/", statuses=None)


def test_the_rater_list_searches_usernames_emails_and_ids(site, curator):
    anna, bob = f.rater("anna"), f.rater("bob")
    get_user_model().objects.filter(pk=bob.pk).update(email="bob@cats.example")
    f.user("cathy", ["curator"])
    client = site(curator)
    listed = _lister(client, "/raters/", "rater")

    assert listed("") == [anna.pk, bob.pk]
    assert listed("q=CATS.EX") == [bob.pk]
    assert listed("q=ann") == [anna.pk]
    assert listed(f"q={anna.pk}") == [anna.pk]
    # a curator is no rater, whatever the search finds in her name
    assert listed("q=cathy") == []
    assert "No rater matches this search." in client.get("/raters/?q=cathy").content.decode()
    _refused(client, "/raters/", statuses=None)


def test_the_pipeline_list_searches_names_and_ids_and_filters_by_status(site, engineer):
    cats = Pipeline.objects.create(name="Cats loop")
    dogs = Pipeline.objects.create(name="dogs loop", status="failed", error="Stage 1: boom")
    client = site(engineer)
    listed = _lister(client, "/training/pipelines/", "pipeline")

    assert listed("") == [dogs.pk, cats.pk]
    assert listed("q=LOOP&status=failed") == [dogs.pk]
    assert listed("q=cats") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert (
        "No pipeline matches these filters."
        in client.get("/training/pipelines/?status=succeeded").content.decode()
    )
    _refused(client, "/training/pipelines/", statuses="running, succeeded, failed")


def test_the_experiment_list_searches_names_and_ids_and_filters_by_status(site, engineer):
    prompts = f.prompt_set(["a held-out cat"], held_out=True)
    cats, dogs = (
        Experiment.objects.create(name=name, kind="image", prompt_set=prompts, seeds=[1])
        for name in ["Cats arms", "dogs arms"]
    )
    Experiment.objects.filter(pk=dogs.pk).update(status="failed", error="boom")
    client = site(engineer)
    listed = _lister(client, "/training/experiments/", "experiment")

    assert listed("") == [dogs.pk, cats.pk]
    assert listed("q=ARMS&status=generating") == [cats.pk]
    assert listed(f"q={dogs.pk}") == [dogs.pk]
    assert (
        "No experiment matches these filters."
        in client.get("/training/experiments/?q=zebra").content.decode()
    )
    _refused(client, "/training/experiments/", statuses="generating, rating, failed")


def test_the_webhook_list_searches_urls_descriptions_and_ids(site, curator):
    cats, dogs = (
        Endpoint.objects.create(
            url=url, description=description, events=["dataset_version.published"], secret="whsec_x"
        )
        for url, description in [
            ("https://cats.example/hook", ""),
            ("https://ci.example/hook", "Dogs trainer"),
        ]
    )
    client = site(curator)
    listed = _lister(client, "/webhooks/", "endpoint")

    assert listed("") == [dogs.pk, cats.pk]
    assert listed("q=CATS") == [cats.pk]
    assert listed("q=dogs") == [dogs.pk]
    assert listed(f"q={cats.pk}") == [cats.pk]
    assert "No endpoint matches this search." in client.get("/webhooks/?q=zebra").content.decode()
    _refused(client, "/webhooks/", statuses=None)
