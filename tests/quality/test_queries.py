"""Query counts of the quality pages, pinned and independent of how many rows they show."""

import pytest
from django.urls import reverse

from annotation.quality.services.membership import rater_pause
from annotation.quality.services.results import campaign_results_compute
from annotation.quality.services.runs import aggregation_run_execute, aggregation_run_request
from tests import factories as f
from tests.conftest import get_ok

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(site, curator):
    return site(curator)


def _judged(camp, n_items: int, n_raters: int, *, per_item: int = 1, answer=None):
    items = f.items(camp, n_items, per_item=per_item)
    for i, rater in enumerate(f.raters(n_raters, campaign=camp)):
        for j, item in enumerate(items):
            f.judge(item, rater, answer(i, j) if answer else {"ok": (i + j) % 2 == 0})


def test_quality_index(browser, flat_queries):
    def grow(n):
        for _ in range(n):
            camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=2)
            _judged(camp, 2, 2)
            campaign_results_compute(campaign=camp, methods=["majority"])

    flat_queries(grow=grow, read=lambda: get_ok(browser, reverse("quality-index")), count=5)


def test_campaign_quality_page(browser, flat_queries):
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=3)

    def grow(n):
        _judged(camp, n, n)
        campaign_results_compute(campaign=camp, methods=["majority", "dawid_skene"])
        rater_pause(campaign=camp, rater_id=camp.memberships.last().rater_id, reason="Off-topic.")

    flat_queries(
        grow=grow,
        read=lambda: get_ok(browser, reverse("quality-campaign", args=[camp.pk])),
        count=10,
    )


def test_leaderboard(browser, flat_queries):
    camp = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1)
    rater = f.raters(1, campaign=camp)[0]
    names = iter(range(100))

    def grow(n):
        versions = [f.model_version(f"model-{next(names)}") for _ in range(n)]
        for left, right in zip(versions, versions[1:] + versions[:1], strict=True):
            item = f.items(camp, 1, per_item=2)[0]
            for link in item.item_candidates.all():
                link.candidate.model_version = left if link.position == 0 else right
                link.candidate.save(update_fields=["model_version"])
            f.judge(item, rater, {"overall": "left"})
        campaign_results_compute(campaign=camp, methods=["majority"], n_bootstrap=10)

    flat_queries(
        grow=grow,
        read=lambda: get_ok(browser, reverse("quality-leaderboard", args=[camp.pk])),
        count=7,
    )


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("api-quality-agreement", 5),
        ("api-quality-results", 5),
        ("api-quality-consensus", 7),
        ("api-quality-raters", 6),
        ("api-quality-policy", 5),
    ],
)
def test_campaign_quality_reads(name, count, browser, flat_queries):
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=3)

    def grow(n):
        _judged(camp, n, n)
        campaign_results_compute(campaign=camp, methods=["majority", "dawid_skene"])

    flat_queries(
        grow=grow,
        read=lambda: get_ok(browser, reverse(name, args=[camp.pk]) + "?question_key=ok"),
        count=count,
    )


def test_campaign_quality_live_part(browser, flat_queries):
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=2)

    def grow(n):
        for _ in range(n):
            run = aggregation_run_request(campaign=camp, methods=["majority"])
            aggregation_run_execute(run_id=run.pk)

    # What static/js/live.js polls on the quality page: as few whatever the number of runs.
    url = reverse("quality-campaign-live", args=[camp.pk])
    flat_queries(grow=grow, read=lambda: get_ok(browser, url), count=5)
