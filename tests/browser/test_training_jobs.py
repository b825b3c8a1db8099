"""The training job list in Chromium: a job that ends while the list is open shows its skipped
evaluation as a warning without a reload (static/js/job_list.js), under the CSP."""

import pytest
from django.db import connections

from tests import factories as f
from tests.factories import fake_finished_output
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_job_list_shows_a_skipped_evaluation_as_the_job_ends(
    live_server, browser_page, csp_violations, settings, tmp_path, models
):
    settings.TRAINING_DIR = tmp_path / "training"
    errors: list[str] = []
    _, page = browser_page
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # given a queued job that asks for an evaluation, and no held-out prompt set
        f.user("eng", ["ml_engineer"])
        job = training_job_create(
            recipe="finetune",
            base_model_version=models["sticker-base"],
            datasets={"train": f.dataset_version(models, purpose="alignment")},
            params={"max_train_steps": 4, "train_batch_size": 2},
            evaluate=True,
        )
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "eng")
        page.fill("#id_password", f.PASSWORD)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.goto(f"{live_server.url}/training/jobs/")
        row = f'tr[data-job="{job.pk}"]'
        assert page.query_selector(f"{row} [data-evaluation]") is None

        # when the job succeeds while the list is open
        training_job_progress_report(job=job, events=[])
        fake_finished_output(job)
        training_job_register_output(job=job)

        # then the row turns to succeeded with the warning and its reason
        warning = page.wait_for_selector(f'{row} [data-evaluation="skipped"]')
        assert warning.text_content() == (
            "evaluation skipped: No held-out prompt set to evaluate on."
        )
        assert warning.get_attribute("class") == "tag warning"
        assert page.text_content(f"{row} [data-field=status]") == "succeeded"
        assert page.get_attribute(row, "data-finished") == "1"
    finally:
        # Playwright's event loop held a connection of its own: close it (see test_csp.py).
        connections.close_all()
    assert (csp_violations, errors) == ([], [])
