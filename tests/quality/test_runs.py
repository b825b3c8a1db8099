"""The aggregation run's life cycle: claimed and settled through ``stickerloop.lifecycle``, and a
redelivered message that races the first worker leaves the run as that worker settled it."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from annotation.quality.models import AggregationRun, QuestionResult
from annotation.quality.services.runs import ENDED, _campaign_lock, _run_settle
from annotation.quality.services.runs import aggregation_run_execute as execute
from stickerloop.lifecycle import claim
from tests import factories as f
from tests.conftest import wait_for

BINARY = [{"key": "ok", "type": "binary", "label": "OK?"}]
FIRST = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _judged_run() -> AggregationRun:
    camp = f.campaign(questions=BINARY, overlap=2)
    raters = f.raters(2, campaign=camp)
    for item in f.items(camp, 2):
        for rater in raters:
            f.judge(item, rater, {"ok": True})
    return AggregationRun.objects.create(campaign=camp, trigger="on_demand", methods=["majority"])


def _first_worker_claims(run: AggregationRun) -> None:
    claim(AggregationRun.objects, run.pk, finished=ENDED, now=FIRST)


def _row(run: AggregationRun) -> tuple:
    return AggregationRun.objects.values_list("status", "error", "started_at").get(pk=run.pk)


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_computed_by_the_redelivery_and_keeps_its_first_start():
    run = _judged_run()
    _first_worker_claims(run)

    settled = execute(run_id=run.pk)

    assert (settled.status, settled.error, settled.started_at) == ("succeeded", "", FIRST)
    assert _row(run) == ("succeeded", "", FIRST)
    run.refresh_from_db()
    assert run.finished_at is not None
    assert run.summary["questions"]["ok"]["judgments"] == 4
    assert QuestionResult.objects.get(campaign=run.campaign, method="majority").n_items == 2


@pytest.mark.django_db
def test_settling_a_run_that_has_ended_writes_nothing():
    run = _judged_run()
    execute(run_id=run.pk)
    run.refresh_from_db()

    assert _run_settle(run.pk, status="failed", error="late") is None

    again = AggregationRun.objects.get(pk=run.pk)
    assert (again.status, again.error, again.finished_at, again.summary) == (
        "succeeded",
        "",
        run.finished_at,
        run.summary,
    )


def _waiting_for_the_campaign_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] == 1


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_redelivery_queued_behind_the_first_worker_leaves_the_run_as_it_settled():
    # given a run its first worker claimed and is computing (it holds the campaign lock)
    run = _judged_run()
    _first_worker_claims(run)
    outcome = {}

    def redelivery():
        try:
            outcome["returned"] = execute(run_id=run.pk)
        finally:
            connection.close()

    with _campaign_lock(run.campaign_id):
        # when the message is delivered again to a second worker
        second = threading.Thread(target=redelivery)
        second.start()
        wait_for(
            _waiting_for_the_campaign_lock,
            timeout=10,
            message="the second worker did not wait for the campaign lock",
        )
        # and the first worker settles the run before it lets the lock go
        _run_settle(run.pk, status="succeeded", summary={"by": "the first worker"})
    second.join(timeout=30)

    # then the second worker returns without computing, and the first outcome stands
    assert not second.is_alive()
    assert outcome == {"returned": None}
    assert _row(run) == ("succeeded", "", FIRST)
    assert AggregationRun.objects.get(pk=run.pk).summary == {"by": "the first worker"}
    assert not QuestionResult.objects.filter(campaign=run.campaign).exists()
