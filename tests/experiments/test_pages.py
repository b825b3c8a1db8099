"""The experiment pages under the training area, and the links to them from the training job
and model version pages."""

import re

import pytest
from django.utils import timezone

from annotation.models import Campaign
from tests import factories
from tests.experiments.conftest import RED, flat
from tests.experiments.test_results import _rate, draw
from training_bridge.experiments.models import Axis, Experiment, ExperimentScore
from training_bridge.experiments.services.results import experiment_results_compute
from training_bridge.experiments.services.scores import ScoreEntry, experiment_scores_record
from training_bridge.jobs.models import TrainingJob, TrainingJobDataset

pytestmark = pytest.mark.django_db

# What static/js/live.js polls on the experiment page, whatever the judgments and scores.
QUERIES_LIVE = 8


def _scores_in(html: str, axis: str) -> list[tuple[str, str]]:
    """(source, value) of each score shown for ``axis``, in page order."""
    return re.findall(
        rf'data-axis="{axis}" data-source="([^"]+)"><span class="value">([^<]+)</span>', html
    )


def test_the_page_shows_arms_by_axes_with_intervals_oracle_beside_human_and_traces(
    site, engineer, curator, raters, image_experiment
):
    experiment = image_experiment(draw)
    _rate(experiment, raters)
    base_arm, tailored = experiment.arms.order_by("position")
    version = factories.dataset_version({"sticker-base": tailored.model_version}, purpose="style")
    job = TrainingJob.objects.create(
        recipe="style_tailoring",
        base_model_version=base_arm.model_version,
        params={},
        total_steps=10,
        status="succeeded",
        output_model_version=tailored.model_version,
    )
    TrainingJobDataset.objects.create(
        job=job, dataset_version=version, role="style", manifest_sha256=version.manifest_sha256
    )
    experiment_results_compute(experiment=experiment)
    experiment_scores_record(
        experiment=experiment,
        entries=[
            ScoreEntry(arm_id=tailored.pk, axis=Axis.ALIGNMENT, source="oracle", value=0.9,
                       low=0.8, high=0.95),
        ],
    )  # fmt: skip
    # when
    page = site(curator).get(f"/training/experiments/{experiment.pk}/")
    # then
    assert page.status_code == 200
    html = page.content.decode()
    assert _scores_in(html, "alignment") == [
        ("human", "0.600"),
        ("human", "0.833"),
        ("oracle", "0.900"),
    ]
    assert '<span class="interval">[0.800, 0.950]</span>' in html
    assert _scores_in(html, "win_overall") == [("human", "0.639")]
    assert _scores_in(html, "diversity") == [("platform", "0.000"), ("platform", "0.402")]
    for link in [
        f"/training/models/{tailored.model_version_id}/",
        f"/training/jobs/{job.pk}/",
        f"/datasets/versions/{version.pk}/",
        f"/batches/{tailored.batch_id}/",
        f"/campaigns/{experiment.rating_campaign_id}/",
        f"/campaigns/{experiment.pair_campaign_id}/",
        f"/api/experiments/{experiment.pk}/results/?format=csv",
        f"/api/experiments/{experiment.pk}/results/?format=json",
    ]:
        assert f'href="{link}"' in html, link
    # a plot per axis with scores, drawn on the server; the oracle's line beside the raters'
    assert html.count('<svg class="plot"') == 6  # win_style: nobody answered it
    assert "sticker-b · oracle" in html and "sticker-b · human" in html
    assert "Compute results now" not in html  # curators read only
    assert "Compute results now" in site(engineer).get(page.request["PATH_INFO"]).content.decode()


def test_compute_from_the_page_and_its_refusal_while_generating(site, engineer, image_experiment):
    experiment = image_experiment(lambda label, key: (flat(RED), 5.0))
    ExperimentScore.objects.all().delete()
    answer = site(engineer).post(f"/training/experiments/{experiment.pk}/compute/", follow=True)
    assert "Computed 4 scores." in answer.content.decode()
    experiment.status = "generating"
    experiment.results_computed_at = None
    experiment.save()
    answer = site(engineer).post(f"/training/experiments/{experiment.pk}/compute/", follow=True)
    assert "is generating with every arm" in answer.content.decode()


def test_job_and_model_version_pages_link_to_their_experiments(site, curator, image_experiment):
    experiment = image_experiment(lambda label, key: (flat(RED), 5.0))
    tailored = experiment.arms.get(label="sticker-b")
    job = TrainingJob.objects.create(
        recipe="finetune",
        base_model_version=tailored.model_version,
        params={},
        total_steps=1,
        status="succeeded",
        output_model_version=tailored.model_version,
        finished_at=timezone.now(),
    )
    browser = site(curator)
    job_page = browser.get(f"/training/jobs/{job.pk}/").content.decode()
    assert f'href="/training/experiments/?job={job.pk}"' in job_page
    model_page = browser.get(f"/training/models/{tailored.model_version_id}/").content.decode()
    assert f'href="/training/experiments/?model_version={tailored.model_version_id}"' in model_page
    for query in (f"job={job.pk}", f"model_version={tailored.model_version_id}", ""):
        listed = browser.get(f"/training/experiments/?{query}").content.decode()
        assert f'href="/training/experiments/{experiment.pk}/"' in listed, query
    elsewhere = factories.model_version("elsewhere")
    listed = browser.get(f"/training/experiments/?model_version={elsewhere.pk}").content.decode()
    assert "No experiment yet." in listed
    assert browser.get("/training/experiments/?job=abc").status_code == 200


def _live(browser, experiment) -> tuple[tuple[str, str], str]:
    """The live fragment's (data-finished, data-phase), and the fragment."""
    html = browser.get(f"/training/experiments/{experiment.pk}/live/").content.decode()
    head = re.match(r'<div id="live" data-finished="(\d)" data-phase="(\w+)">', html)
    return head.groups(), html


def test_the_live_part_shows_new_results_until_both_campaigns_close(
    site, curator, raters, image_experiment, django_assert_num_queries
):
    # given an experiment whose campaigns are open, no results computed
    experiment = image_experiment(draw)
    ExperimentScore.objects.all().delete()
    browser = site(curator)
    page = browser.get(f"/training/experiments/{experiment.pk}/").content.decode()
    url = f"/training/experiments/{experiment.pk}/live/"
    assert f'src="/static/js/live.js" data-url="{url}"' in page
    state, html = _live(browser, experiment)
    assert state == ("0", "rating") and _scores_in(html, "alignment") == []

    # when raters judge and the results are computed, the fragment carries them
    _rate(experiment, raters)
    experiment_results_compute(experiment=experiment)
    state, html = _live(browser, experiment)
    assert state == ("0", "rating")
    assert _scores_in(html, "alignment") == [("human", "0.600"), ("human", "0.833")]
    with django_assert_num_queries(QUERIES_LIVE):
        browser.get(url)

    # then once both campaigns are closed the page stops asking
    Campaign.objects.filter(pk=experiment.rating_campaign_id).update(status="closed")
    assert _live(browser, experiment)[0] == ("0", "rating")
    Campaign.objects.filter(pk=experiment.pair_campaign_id).update(status="closed")
    assert _live(browser, experiment)[0] == ("1", "rating")


def test_the_live_part_of_a_failed_or_generating_experiment(site, curator, image_experiment):
    experiment = image_experiment(lambda label, key: (flat(RED), 5.0))
    browser = site(curator)
    Experiment.objects.filter(pk=experiment.pk).update(status="generating")
    assert _live(browser, experiment)[0] == ("0", "generating")
    Experiment.objects.filter(pk=experiment.pk).update(status="failed", error="a batch failed")
    state, html = _live(browser, experiment)
    assert state == ("1", "failed")
    assert '<dd class="error">a batch failed</dd>' in html
