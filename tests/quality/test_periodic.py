"""The periodic aggregation check: which campaigns have judgments their stored results have
not read, in one query, and the runs it queues (the worker side is in test_worker.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Campaign
from annotation.quality.models import AggregationRun
from annotation.quality.selectors import campaigns_with_new_judgments
from annotation.quality.services.runs import periodic_runs_request
from tests import factories as f

pytestmark = pytest.mark.django_db

BINARY = [{"key": "ok", "type": "binary", "label": "OK?"}]


def _campaign(name: str, *, judged_at=(), last_run_at=None, closed_at=None) -> Campaign:
    """A campaign with a judgment made at each of ``judged_at`` and, if ``last_run_at``, a
    successful aggregation run started then."""
    camp = f.campaign(questions=BINARY, name=name)
    rater = f.raters(1, prefix=name)[0]
    for at, item in zip(judged_at, f.items(camp, len(judged_at)), strict=True):
        f.judge(item, rater, {"ok": True}, at=at)
    if last_run_at is not None:
        AggregationRun.objects.create(
            campaign=camp,
            trigger="periodic",
            methods=["majority"],
            status="succeeded",
            started_at=last_run_at,
            finished_at=last_run_at + timedelta(seconds=1),
        )
    if closed_at is not None:
        Campaign.objects.filter(pk=camp.pk).update(status="closed", closed_at=closed_at)
    return camp


def test_only_campaigns_with_judgments_newer_than_their_last_run_are_due(
    django_assert_num_queries,
):
    # given campaigns in every case the check tells apart
    now = timezone.now()
    before, run, after = now - timedelta(minutes=10), now - timedelta(minutes=5), now
    due = [
        _campaign("never-run", judged_at=[before]),
        _campaign("judged-after-run", judged_at=[before, after], last_run_at=run),
        _campaign("closed-after-run", judged_at=[after], last_run_at=run, closed_at=after),
    ]
    _campaign("no-judgments")
    _campaign("nothing-new", judged_at=[before], last_run_at=run)
    _campaign("closed-before-run", judged_at=[before], last_run_at=run, closed_at=before)
    _campaign("closed-and-run-since", judged_at=[before], last_run_at=after, closed_at=run)
    # closed after its last run, but too long ago for the check to look at any more
    long_ago = now - timedelta(hours=3)
    _campaign(
        "closed-long-ago",
        judged_at=[long_ago + timedelta(minutes=2)],
        last_run_at=long_ago,
        closed_at=long_ago + timedelta(minutes=5),
    )
    # a failed run does not count as having read the judgments
    failed = _campaign("failed-run", judged_at=[after])
    AggregationRun.objects.create(
        campaign=failed, trigger="periodic", methods=["majority"], status="failed", started_at=now
    )
    due.append(failed)

    # when / then: one query, whatever the number of campaigns
    with django_assert_num_queries(1):
        found = campaigns_with_new_judgments()
    assert [c.name for c in found] == [c.name for c in due]


def test_the_periodic_request_queues_one_run_per_due_campaign_and_joins_waiting_ones():
    now = timezone.now()
    due = _campaign("due", judged_at=[now])
    _campaign("up-to-date", judged_at=[now - timedelta(minutes=10)], last_run_at=now)

    ids = periodic_runs_request()

    run = AggregationRun.objects.get(campaign=due)
    assert ids == [run.pk]
    assert (run.status, run.trigger) == ("queued", "periodic")
    # the next beat finds the run still waiting and queues no second one
    assert periodic_runs_request() == [run.pk]
    assert AggregationRun.objects.filter(trigger="periodic", status="queued").count() == 1
