"""The evaluation on the training pages: the start form names the prompt set it will use, a
skipped evaluation is a warning on the job list and page, and the pair campaign's win rates
show on the job page."""

import re

import pytest

from annotation.models import Campaign, CampaignStatus
from annotation.quality.services.results import campaign_results_compute
from tests import factories as f
from tests.factories import fake_finished_output
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import EvaluationStatus, TrainingJob, TrainingJobEvaluation
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report

pytestmark = pytest.mark.django_db

NO_SET = (
    "No held-out prompt set exists: the evaluation of an image model will be skipped. Import one "
    'marked held-out on the <a href="/prompt-sets/">prompt sets page</a> first.'
)


@pytest.fixture
def browser(site, engineer):
    return site(engineer)


def _finished_job(models, datasets):
    """A finetune job that asked for an evaluation, finished and registered."""
    job = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 4, "train_batch_size": 2},
        evaluate=True,
    )
    training_job_progress_report(job=job, events=[])
    fake_finished_output(job)
    training_job_register_output(job=job)
    job.refresh_from_db()
    return job


def _evaluation_text(html: str, about: str = "default") -> str:
    return re.search(rf'<p class="[^"]*" id="evaluation-{about}">(.*?)</p>', html, re.S).group(1)


def test_the_form_says_that_no_held_out_prompt_set_exists(browser, models):
    f.prompt_set(["a red cat"], held_out=False, name="not held out")

    html = browser.get("/training/jobs/new/").content.decode()

    assert '<p class="warning" id="evaluation-default">' in html
    assert _evaluation_text(html) == NO_SET
    assert _evaluation_text(html, "sources") == (
        "No sticker of a held-out prompt exists: the evaluation of an animation model will be "
        "skipped. Generate a batch from a held-out prompt set first."
    )


def test_the_form_names_the_newest_held_out_prompt_set(browser, models):
    f.prompt_set(["a red cat"], held_out=True, name="older held out")
    newer = f.prompt_set(["a blue dog"], held_out=True, name="newer held out")
    other = f.prompt_set(["a green frog"], held_out=False, name="newest, not held out")
    held_out_prompt = newer.prompts.get()
    f.sticker(on_prompt=held_out_prompt, seed=0)
    f.sticker(on_prompt=held_out_prompt, seed=1)
    f.sticker(on_prompt=other.prompts.get(), seed=0)

    html = browser.get("/training/jobs/new/").content.decode()

    assert _evaluation_text(html) == (
        "Unless you choose another, an image model is evaluated on the held-out prompt set "
        "<strong>newer held out</strong>."
    )
    assert _evaluation_text(html, "sources") == (
        "An animation model is evaluated on 2 stickers of held-out prompts, the newest."
    )
    assert "No held-out prompt set exists" not in html


def test_a_refused_form_keeps_the_chosen_evaluation_prompt_set(browser, models, datasets):
    older = f.prompt_set(["a red cat"], held_out=True, name="older held out")
    f.prompt_set(["a blue dog"], held_out=True, name="newer held out")

    response = browser.post(
        "/training/jobs/new/",
        {
            "recipe": "finetune",
            "base_model_version": models["sticker-base"].pk,
            "dataset_train": datasets["alignment"].pk,
            "params": "[]",
            "evaluation_prompt_set": older.pk,
        },
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "Parameters must be a JSON object" in html
    assert f'<option value="{older.pk}" selected>older held out</option>' in html
    assert not TrainingJob.objects.exists()


def test_a_skipped_evaluation_is_a_warning_on_the_job_list_and_page(browser, models, datasets):
    job = _finished_job(models, datasets)
    assert (job.status, job.evaluation.status) == ("succeeded", EvaluationStatus.SKIPPED)

    listing = browser.get("/training/jobs/").content.decode()
    row = re.search(rf'<tr data-job="{job.pk}" .*?</tr>', listing, re.S).group(0)
    assert (
        '<span class="status status-succeeded" data-field="status">succeeded</span><br>'
        '<span class="tag warning" data-evaluation="skipped">'
        "evaluation skipped: No held-out prompt set to evaluate on.</span>"
    ) in row

    page = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    assert (
        '<p class="warning" id="evaluation-warning" role="status">The job succeeded, but its '
        "evaluation against the parent was skipped: No held-out prompt set to evaluate on.</p>"
    ) in page
    assert '<dd class="status status-skipped">Skipped</dd>' in page


def test_a_job_without_evaluation_trouble_shows_no_warning(browser, models, datasets):
    f.prompt_set(["a red cat"], held_out=True, name="held out")
    job = _finished_job(models, datasets)
    assert job.evaluation.status == EvaluationStatus.GENERATING

    assert "warning" not in browser.get("/training/jobs/").content.decode().split("<tbody>")[1]
    assert (
        'id="evaluation-warning"' not in browser.get(f"/training/jobs/{job.pk}/").content.decode()
    )


def test_the_job_page_shows_the_evaluation_win_rates(browser, models, datasets):
    # given a finished job whose evaluation opened a pair campaign of new (left) vs parent
    job = _finished_job(models, datasets)
    new, parent = job.output_model_version, job.base_model_version
    campaign = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1)
    TrainingJobEvaluation.objects.filter(job=job).update(
        status=EvaluationStatus.OPEN, campaign=campaign, pairs=5, error=""
    )
    page = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    assert '<p id="win-rates-pending">No judgments yet: win rates appear once raters have ' in page
    assert 'id="win-rates"' not in page

    # when a rater compares five pairs: the new model wins 3, the parent 1, one tie
    rater = f.raters(1)[0]
    for outcome in ["left", "left", "left", "right", "tie"]:
        item = f.items(campaign, 1, per_item=2)[0]
        for link in item.item_candidates.all():
            link.candidate.model_version = new if link.position == 0 else parent
            link.candidate.save(update_fields=["model_version"])
        f.judge(item, rater, {"overall": outcome})
    page = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    assert (
        '<p id="win-rates-pending">5 judgments so far; win rates appear once the campaign\'s '
        "results are computed (within a minute while beat runs).</p>"
    ) in page

    # then once the quality side has computed the results, the page shows the win rate
    campaign_results_compute(campaign=campaign, methods=["majority"], n_bootstrap=0)
    page = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    table = re.search(r'<table class="grid" id="win-rates">.*?</table>', page, re.S).group(0)
    assert re.findall(
        r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>"
        r"<td>(.*?)</td></tr>",
        table,
    ) == [("overall", "3", "1", "1", "70%")]
    assert "5 judgments in the campaign so far" in page
    assert 'id="win-rates-pending"' not in page


def test_the_progress_api_carries_the_evaluation_state(api, engineer, models, datasets):
    skipped = _finished_job(models, datasets)
    queued = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 4, "train_batch_size": 2},
        evaluate=True,
    )

    rows = api(engineer).get(f"/api/training-jobs/progress/?ids={skipped.pk},{queued.pk}").json()

    assert sorted(
        (row["id"], row["status"], row["evaluation_status"], row["evaluation_error"])
        for row in rows
    ) == [
        (skipped.pk, "succeeded", "skipped", "No held-out prompt set to evaluate on."),
        (queued.pk, "queued", None, None),
    ]


def _live(browser, job) -> tuple[str, str]:
    """The live fragment's data-finished and data-phase."""
    html = browser.get(f"/training/jobs/{job.pk}/live/").content.decode()
    return re.match(r'<div id="live" data-finished="(\d)" data-phase="(\w+)">', html).groups()


def test_the_live_part_keeps_moving_until_the_evaluation_ends(browser, models, datasets):
    # given a job that succeeded and whose evaluation is generating with both models
    f.prompt_set(["a red cat"], held_out=True, name="held out")
    job = _finished_job(models, datasets)
    html = browser.get(f"/training/jobs/{job.pk}/live/").content.decode()
    assert _live(browser, job) == ("0", "succeeded")
    assert '<dd class="status status-generating">Generating with both models</dd>' in html

    # when its pair campaign opens, raters still move the win rates: the page keeps polling
    campaign = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1)
    TrainingJobEvaluation.objects.filter(job=job).update(
        status=EvaluationStatus.OPEN, campaign=campaign, pairs=5
    )
    html = browser.get(f"/training/jobs/{job.pk}/live/").content.decode()
    assert _live(browser, job) == ("0", "succeeded")
    assert '<dd class="status status-open">Pair campaign open</dd>' in html
    assert '<p id="win-rates-pending">No judgments yet' in html

    # then once the campaign is closed nothing moves any more
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CLOSED)
    assert _live(browser, job) == ("1", "succeeded")


def test_the_live_part_ends_with_a_skipped_evaluation_or_a_failed_job(browser, models, datasets):
    skipped = _finished_job(models, datasets)
    assert _live(browser, skipped) == ("1", "succeeded")
    running = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 4, "train_batch_size": 2},
        evaluate=True,
    )
    training_job_progress_report(job=running, events=[])
    assert _live(browser, running) == ("0", "running")
    TrainingJob.objects.filter(pk=running.pk).update(status="failed")
    assert _live(browser, running) == ("1", "failed")


def test_the_live_part_takes_a_fixed_number_of_queries(
    browser, models, datasets, django_assert_num_queries
):
    f.prompt_set(["a red cat"], held_out=True, name="held out")
    job = _finished_job(models, datasets)
    campaign = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1)
    TrainingJobEvaluation.objects.filter(job=job).update(
        status=EvaluationStatus.OPEN, campaign=campaign, pairs=5
    )
    # session, user, job with its evaluation and campaign, dataset links, loss curves, the
    # ranking results with their strengths, the judgment count
    with django_assert_num_queries(8):
        assert browser.get(f"/training/jobs/{job.pk}/live/").status_code == 200
