"""Training pages: job list with progress bars, job page with the loss curve per role, the
start form, and a model version's lineage drawn as a graph."""

import re

import pytest
from django.test import Client

from tests.factories import fake_finished_output, progress_events
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import TrainingJob
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(site, engineer):
    return site(engineer)


def _tailoring_job(models, datasets, **kwargs):
    return training_job_create(
        recipe="style_tailoring",
        base_model_version=models["sticker-base"],
        datasets={"content": datasets["alignment"], "style": datasets["style"]},
        params={"max_train_steps": 4, "timestep_split": 650},
        evaluate=False,
        **kwargs,
    )


def test_job_list_shows_progress_bars(browser, models, datasets):
    job = _tailoring_job(models, datasets, name="tailor")
    training_job_progress_report(
        job=job, events=progress_events(job, {"content": [1.0], "style": [0.5]})
    )
    html = browser.get("/training/jobs/").content.decode()
    row = re.search(rf'<tr data-job="{job.pk}" data-finished="0">.*?</tr>', html, re.S).group(0)
    assert 'data-percent="25"' in row
    assert "1 / 4" in row and "content 1.0000, style 0.5000" in row
    assert "status-running" in row
    assert "/api/training-jobs/progress/" in html


def test_job_page_draws_the_loss_curve_per_role_and_shows_the_run(browser, models, datasets):
    job = _tailoring_job(models, datasets)
    training_job_progress_report(
        job=job,
        events=progress_events(
            job, {"content": [1.0, 0.8, 0.7, 0.6], "style": [0.9, 0.7, 0.5, 0.4]}
        ),
        log_lines=['{"event":"done"}', "<script>alert(1)</script>"],
    )
    fake_finished_output(job)
    version = training_job_register_output(job=job)
    html = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    # One polyline per role, a point per logged step.
    assert re.findall(r'<polyline data-role="(\w+)" data-points="(\d+)"', html) == [
        ("content", "4"),
        ("style", "4"),
    ]
    assert "<th>timestep_split</th><td><code>650</code></td>" in html
    assert datasets["alignment"].manifest_sha256 in html
    assert f'href="/training/models/{version.pk}/"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    live = browser.get(f"/training/jobs/{job.pk}/live/").content.decode()
    assert live.startswith('<div id="live" data-finished="1" data-phase="succeeded">')
    assert 'data-role="style"' in live


def test_start_form_answers_bad_parameters_with_the_reason_and_stores_nothing(
    browser, models, datasets
):
    form = {
        "recipe": "style_tailoring",
        "base_model_version": models["sticker-base"].pk,
        "dataset_content": datasets["alignment"].pk,
        "dataset_style": datasets["style"].pk,
        "params": '{"timestep_split": 1200}',
        "launcher": "queue",
    }
    response = browser.post("/training/jobs/new/", form)
    assert response.status_code == 400
    assert (
        "`timestep_split` has to be an integer in [0, 1000) but is 1200."
        in response.content.decode()
    )
    assert not TrainingJob.objects.exists()
    form["params"] = '{"timestep_split": 400, "max_train_steps": 10}'
    response = browser.post("/training/jobs/new/", form)
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/training/jobs/{job.pk}/"
    assert job.params["timestep_split"] == 400


def test_lineage_page_draws_the_parent_chain_and_children(browser, models, datasets):
    first = _tailoring_job(models, datasets)
    training_job_progress_report(job=first, events=[])
    fake_finished_output(first)
    child = training_job_register_output(job=first)
    second = training_job_create(
        recipe="finetune",
        base_model_version=child,
        datasets={"train": datasets["style"]},
        params={"max_train_steps": 2},
        evaluate=False,
    )
    training_job_progress_report(job=second, events=[])
    fake_finished_output(second)
    grandchild = training_job_register_output(job=second)
    html = browser.get(f"/training/models/{child.pk}/").content.decode()
    nodes = re.findall(r'<g class="node" data-version="(\d+)">', html)
    assert nodes == [str(models["sticker-base"].pk), str(child.pk), str(grandchild.pk)]
    assert html.count('<line class="edge"') == 2
    # The datasets of the job on the chain hang off its edge.
    assert re.findall(r'<g class="dataset" data-dataset-version="(\d+)">', html) == [
        str(datasets["alignment"].pk),
        str(datasets["style"].pk),
    ]
    assert f"job {first.pk} · style_tailoring" in html and f"job {second.pk} · finetune" in html
    assert datasets["alignment"].manifest_sha256[:12] in html


def test_pages_need_a_staff_role(rater, models):
    client = Client()
    client.force_login(rater)
    assert client.get("/training/jobs/").status_code == 403
    assert client.get(f"/training/models/{models['sticker-base'].pk}/").status_code == 403
