"""Pipelines over HTTP: declaring through the API and the form (refusals are 400s naming the
field, storing nothing), the resume action, the pages and their pinned query counts."""

import json

import pytest

from tests import factories
from tests.conftest import get_ok
from training_bridge.jobs.lifecycle import training_job_cancel
from training_bridge.pipelines.models import Pipeline, PipelineStage
from training_bridge.pipelines.services.declaration import pipeline_create
from training_bridge.pipelines.services.pipelines import pipeline_advance

pytestmark = pytest.mark.django_db


def _two_stages(models, version) -> list[dict]:
    return [
        {
            "name": "corpus",
            "kind": "dataset",
            "rule": version.rule_id,
            "role": "train",
            "dataset_version": version.pk,
        },
        {
            "name": "base",
            "kind": "training",
            "recipe": "finetune",
            "base_model_version": models["sticker-base"].pk,
            "params": {"max_train_steps": 4},
        },
    ]


def test_the_api_declares_a_pipeline_and_answers_its_stages(
    api, engineer, models, datasets, django_capture_on_commit_callbacks
):
    version = datasets["alignment"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(engineer).post(
            "/api/pipelines/create/",
            {"name": "two steps", "stages": _two_stages(models, version)},
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["status"], body["current_position"], body["created_by"]) == (
        "two steps",
        "running",
        0,
        "engineer",
    )
    assert [(s["position"], s["name"], s["kind"], s["status"]) for s in body["stages"]] == [
        (0, "corpus", "dataset", "pending"),
        (1, "base", "training", "pending"),
    ]
    assert body["stages"][0]["dataset_version"] == version.pk
    assert body["stages"][1]["base_model_version"] == models["sticker-base"].pk
    assert len(callbacks) == 1  # the first advance, queued after commit
    # the detail answers where each stage stands once it advanced
    pipeline_advance(pipeline_id=body["id"])
    detail = api(engineer).get(f"/api/pipelines/{body['id']}/").json()
    stage = PipelineStage.objects.get(pipeline_id=body["id"], position=1)
    assert [s["status"] for s in detail["stages"]] == ["succeeded", "running"]
    assert (detail["stages"][1]["job"], detail["stages"][1]["training_trigger"]) == (
        stage.job_id,
        stage.training_trigger_id,
    )
    listed = api(engineer).get("/api/pipelines/?status=running").json()
    assert [p["id"] for p in listed["results"]] == [body["id"]]
    assert api(engineer).get("/api/pipelines/?status=failed").json()["results"] == []


def test_a_refused_declaration_is_a_400_naming_the_field_and_stores_nothing(
    api, engineer, models, datasets
):
    stages = _two_stages(models, datasets["alignment"])
    stages[1]["recipe"] = "sequential"
    response = api(engineer).post(
        "/api/pipelines/create/", {"name": "bad", "stages": stages}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "stages.1.inputs.first": [
            "The sequential recipe trains on a dataset in role 'first'; no earlier dataset "
            "stage fills that role."
        ],
        "stages.1.inputs.second": [
            "The sequential recipe trains on a dataset in role 'second'; no earlier dataset "
            "stage fills that role."
        ],
    }
    response = api(engineer).post(
        "/api/pipelines/create/", {"name": "bad", "stages": "corpus"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"stages": ["Give 1 to 20 stages, in the order they run."]}
    assert (Pipeline.objects.count(), PipelineStage.objects.count()) == (0, 0)


def test_resume_answers_409_unless_failed_and_restarts_the_failed_stage(
    api, engineer, models, datasets
):
    pipeline = pipeline_create(
        name="resumable", stages=_two_stages(models, datasets["alignment"]), created_by=engineer
    )
    response = api(engineer).post(f"/api/pipelines/{pipeline.pk}/resume/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Pipeline {pipeline.pk} is running; only a failed pipeline resumes."
    }
    pipeline_advance(pipeline_id=pipeline.pk)
    training_job_cancel(job=pipeline.stages.get(position=1).job, cancelled_by=engineer)
    pipeline_advance(pipeline_id=pipeline.pk)
    # when
    response = api(engineer).post(f"/api/pipelines/{pipeline.pk}/resume/")
    # then
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]) == ("running", "")
    assert [s["status"] for s in response.json()["stages"]] == ["succeeded", "pending"]


def test_the_form_declares_a_pipeline_or_shows_the_refusal(site, engineer, models, datasets):
    browser = site(engineer)
    page = browser.get("/training/pipelines/new/")
    assert page.status_code == 200
    assert b"&quot;kind&quot;: &quot;evaluation&quot;" in page.content  # the example stages
    stages = _two_stages(models, datasets["alignment"])
    stages[1]["base_model_version"] = 999999
    response = browser.post(
        "/training/pipelines/new/", {"name": "from the form", "stages": json.dumps(stages)}
    )
    assert response.status_code == 400
    assert (
        "<li><strong>stages.1.base_model_version</strong>: No model version with id 999999.</li>"
        in response.content.decode()
    )
    response = browser.post("/training/pipelines/new/", {"name": "from the form", "stages": "["})
    assert response.status_code == 400
    assert "<strong>stages</strong>: Stages must be a JSON list of objects" in (
        response.content.decode()
    )
    assert Pipeline.objects.count() == 0
    stages[1]["base_model_version"] = models["sticker-base"].pk
    response = browser.post(
        "/training/pipelines/new/", {"name": "from the form", "stages": json.dumps(stages)}
    )
    pipeline = Pipeline.objects.get()
    assert (response.status_code, response.url) == (302, f"/training/pipelines/{pipeline.pk}/")
    assert pipeline.created_by == engineer


def test_the_pipeline_page_shows_stages_links_the_failure_and_the_resume_button(
    site, engineer, curator, models, datasets
):
    pipeline = pipeline_create(
        name="shown", stages=_two_stages(models, datasets["alignment"]), created_by=engineer
    )
    pipeline_advance(pipeline_id=pipeline.pk)
    job = pipeline.stages.get(position=1).job
    training_job_cancel(job=job, cancelled_by=engineer)
    pipeline_advance(pipeline_id=pipeline.pk)
    page = site(engineer).get(f"/training/pipelines/{pipeline.pk}/").content.decode()
    assert f'<a href="/training/jobs/{job.pk}/">{job.pk}</a>' in page
    job_page = site(engineer).get(f"/training/jobs/{job.pk}/").content.decode()
    link = f'<a href="/training/pipelines/{pipeline.pk}/" id="pipeline-link">'
    assert f"{link}pipeline {pipeline.pk}</a>" in job_page
    version = datasets["alignment"]
    assert f'<a href="/datasets/versions/{version.pk}/">{version}</a>' in page
    reason = f"Stage 1 (base): Job {job.pk} cancelled: Cancelled by engineer."
    assert f'<dd class="error" id="pipeline-error">{reason}</dd>' in page
    assert f'action="/training/pipelines/{pipeline.pk}/resume/" data-confirm=' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'data-url="/training/pipelines/' in page and "js/live.js" in page
    # curators read it but have no button
    assert (
        'id="resume"'
        not in site(curator).get(f"/training/pipelines/{pipeline.pk}/").content.decode()
    )
    # the button resumes
    response = site(engineer).post(f"/training/pipelines/{pipeline.pk}/resume/")
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.status == "running"
    live = site(engineer).get(f"/training/pipelines/{pipeline.pk}/live/").content.decode()
    assert live.startswith(
        '<div id="live" data-finished="0" data-state="running:1:succeeded,pending"'
    )


def test_the_pages_and_list_api_take_a_fixed_number_of_queries(
    site, api, engineer, models, datasets, flat_queries
):
    browser = site(engineer)
    client = api(engineer)
    created = []

    def grow(n):
        for _ in range(n):
            pipeline = pipeline_create(
                name=f"pipeline {len(created)}",
                stages=_two_stages(models, factories.dataset_version(models, purpose="alignment")),
                created_by=engineer,
            )
            pipeline_advance(pipeline_id=pipeline.pk)
            created.append(pipeline)

    def read():
        get_ok(browser, "/training/pipelines/")
        assert client.get("/api/pipelines/").status_code == 200
        newest = created[-1].pk
        get_ok(browser, f"/training/pipelines/{newest}/", f"/training/pipelines/{newest}/live/")
        assert client.get(f"/api/pipelines/{newest}/").status_code == 200

    # The first page of a login moves the session's expiry (a write, once in 5 minutes); the
    # API's first answer reads the user's roles, kept on the user it is forced to.
    get_ok(browser, "/training/pipelines/")
    assert client.get("/api/pipelines/").status_code == 200
    # pages: 3 for the session, user and roles, then list: count, page, current stages;
    # detail and live: pipeline, stages. API: list 3, detail 2.
    flat_queries(grow=grow, read=read, count=21)
