"""The ML engineer's journey in Debian's Chromium, keyboard and mouse only, no API call from the
test: start a finetuning job on a cluster from the job form, watch its loss curve grow, see the
evaluation against the parent open and its win rates arrive, follow the new model to its lineage
and find it in the model gallery.

Three parts are not the engineer's and are played with the services they call: the cluster's
trainer (its progress reports and its output, as the external launcher's API receives them),
the raters' judgments in the evaluation campaign (factories), and beat's computation of the
campaign's results. The evaluation's generation runs in the live server's process
(tasks_in_the_server)."""

import pytest

from annotation.models import Judgment
from annotation.quality.services.results import campaign_results_compute
from tests import factories as f
from tests.browser import screen
from training_bridge.jobs.models import TrainingJob
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_engineer_trains_evaluates_and_finds_the_new_model(
    live_server, page, models, tasks_in_the_server, one_torch_thread, settings, tmp_path
):
    settings.TRAINING_DIR = tmp_path / "training"
    f.user("eli", ["ml_engineer"])
    rater = f.user("rae", ["rater"])
    f.prompt_set(["a cat"], held_out=True, name="held out")
    version = f.dataset_version(models, purpose="alignment")
    # Two denoising steps instead of the model's 20: the evaluation draws its four stickers in
    # about a second, not thirty, and the new model inherits the parent's defaults.
    base = models["sticker-base"]
    base.default_params = {**base.default_params, "num_inference_steps": 2}
    base.save(update_fields=["default_params"])
    screen.log_in(live_server, page, "eli", "/")

    # The job form, which names the held-out prompt set the evaluation will use.
    page.click("nav >> text=Training")
    with page.expect_navigation():
        page.click("text=start a job")
    assert page.text_content("#evaluation-default") == (
        "Unless you choose another, an image model is evaluated on the held-out prompt set "
        "held out."
    )
    page.fill("input[name=name]", "cats finetune")
    page.select_option("select[name=recipe]", "finetune")
    page.select_option("select[name=base_model_version]", str(base.pk))
    page.select_option("select[name=dataset_train]", str(version.pk))
    page.fill("textarea[name=params]", '{"max_train_steps": 4, "train_batch_size": 2}')
    page.select_option("select[name=launcher]", "external")
    with page.expect_navigation():
        page.click("button:has-text('Start')")
    job = TrainingJob.objects.get(name="cats finetune")
    assert page.url == f"{live_server.url}/training/jobs/{job.pk}/"

    # The cluster reports two steps, then two more: the curve grows on the open page.
    events = f.progress_events(job, {"train": [1.0, 0.8, 0.7, 0.6]})
    training_job_progress_report(job=job, events=events[:3])
    page.wait_for_selector('polyline[data-role=train][data-points="2"]')
    training_job_progress_report(job=job, events=events[3:])
    page.wait_for_selector('polyline[data-role=train][data-points="4"]')
    assert "step 4 of 4" in page.text_content("#live")

    # The cluster's output is registered: the evaluation generates with both models and opens
    # its pair campaign, which the page shows.
    f.fake_finished_output(job)
    new = training_job_register_output(job=job)
    # The page asks less often while nothing changes (live.js): up to 30 s apart.
    page.wait_for_selector("#evaluation .status-open", timeout=40_000)
    job.evaluation.refresh_from_db()
    campaign = job.evaluation.campaign
    assert (job.evaluation.pairs, campaign.items.count()) == (2, 2)

    # The rater prefers the new model on every pair; beat computes the results; the win rates
    # appear on the job page without a reload.
    for item in campaign.items.all():
        new_side = item.item_candidates.get(candidate__model_version=new).side
        answers = {q["key"]: new_side for q in campaign.question_schema if q.get("required")}
        f.judge(item, rater, answers)
    campaign_results_compute(campaign=campaign, methods=["majority"], n_bootstrap=0)
    page.wait_for_selector("#win-rates", timeout=40_000)
    rows = page.locator("#win-rates tbody tr")
    assert [row.locator("td").all_text_contents() for row in rows.all()] == [
        [key, "2", "0", "0", "100%"] for key in sorted(answers)
    ]
    assert Judgment.objects.filter(campaign=campaign).count() == 2

    # The new model's lineage, from the job page: its parent and the job that trained it.
    with page.expect_navigation():
        page.click(f"#live >> text={new.name}")
    assert page.url == f"{live_server.url}/training/models/{new.pk}/"
    rows = page.locator("#lineage tbody tr")
    assert [row.locator("td").nth(0).text_content() for row in rows.all()] == [base.name, new.name]

    # The model gallery lists it, a child of its parent.
    page.click("nav >> text=Models")
    row = page.locator(f'tr[data-model-version="{new.pk}"]')
    assert row.locator("td").nth(0).text_content() == new.name
    assert row.locator("td").nth(3).text_content() == base.name
