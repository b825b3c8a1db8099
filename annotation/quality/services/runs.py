"""Aggregation runs: the state machine the computing task drives, and periodic requests."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from annotation.models import Campaign
from annotation.quality import bulk
from annotation.quality.models import (
    AggregationRun,
    RunStatus,
    RunTrigger,
)
from annotation.quality.selectors import campaigns_with_new_judgments
from annotation.quality.services.results import campaign_results_compute, check_methods
from annotation.services.campaigns import campaign_lock
from stickerloop import events
from stickerloop.lifecycle import claim, lock_unfinished, mark_finished

logger = logging.getLogger(__name__)

# Advisory lock keys of this app: "QC" (ASCII) in the high bits, the campaign id below 2**40.
ADVISORY_NAMESPACE = 0x5143 << 40
ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


@transaction.atomic
def aggregation_run_request(
    *,
    campaign: Campaign,
    methods: Sequence[str] | None = None,
    trigger: str = RunTrigger.ON_DEMAND,
    requested_by: AbstractBaseUser | None = None,
) -> AggregationRun:
    """Queue a computation of the campaign's results (on the ``default`` queue, after commit).

    A run already waiting for the campaign is returned instead of a second one.
    """
    from annotation.quality import tasks

    methods = check_methods(campaign=campaign, methods=methods)
    campaign_lock(campaign)
    waiting = AggregationRun.objects.filter(campaign=campaign, status=RunStatus.QUEUED).first()
    if waiting is not None:
        return waiting
    run = AggregationRun.objects.create(
        campaign=campaign, trigger=trigger, methods=methods, requested_by=requested_by
    )
    tasks.aggregate_campaign.delay_on_commit(run.pk)
    return run


@contextmanager
def _campaign_lock(campaign_id: int):
    """One computation per campaign at a time (a session advisory lock on PostgreSQL): two runs
    replacing the same result rows at once would trip over each other's inserts."""
    if not bulk.is_postgres():
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_NAMESPACE + campaign_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_NAMESPACE + campaign_id])


def _run_settle(
    run_id: int, *, status: str, error: str = "", summary: dict | None = None
) -> AggregationRun | None:
    """Record how the run ended; None, and nothing written, when it has ended already. Assumes:
    the caller holds the campaign lock, so no other worker of this run is computing."""
    with transaction.atomic():
        run = lock_unfinished(AggregationRun.objects.all(), run_id, finished=ENDED)
        if run is None:
            logger.warning("aggregation run %s had ended already; its first outcome stands", run_id)
            return None
        fields = None if summary is None else {"summary": summary}
        mark_finished(run, status=status, error=error, fields=fields)
        if status == RunStatus.SUCCEEDED:
            events.publish(
                events.CAMPAIGN_RESULTS_COMPUTED,
                object_type="campaign",
                object_id=run.campaign_id,
                data={"aggregation_run": run.pk},
            )
    return run


def aggregation_run_execute(*, run_id: int) -> AggregationRun | None:
    """Claim the run, compute, and settle it; None when it has ended already (idempotent).

    A redelivered message claims a run that is RUNNING (its worker died, or the broker gave the
    message out again while that worker still computes); a redelivery keeps the first start, so
    the periodic check never skips judgments a run may not have read. The campaign lock queues
    a second worker behind the first, which settles the run before letting go: the second then
    finds it ended and leaves it (and the rows it stored) alone instead of computing again.
    """
    run = claim(
        AggregationRun.objects.select_related("campaign"),
        run_id,
        finished=ENDED,
        keep_started_at=True,
    )
    if run is None:
        return None
    with _campaign_lock(run.campaign_id):
        if AggregationRun.objects.filter(pk=run_id, status__in=ENDED).exists():
            return None
        try:
            summary = campaign_results_compute(campaign=run.campaign, methods=run.methods, run=run)
        except Exception as exc:
            # Whatever broke, the run records why and ends FAILED rather than staying RUNNING.
            logger.exception("aggregation run %s failed", run_id)
            return _run_settle(
                run_id, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
        return _run_settle(run_id, status=RunStatus.SUCCEEDED, summary=summary)


def periodic_runs_request() -> list[int]:
    """Queue a run for every campaign with judgments its results have not read yet (see
    ``campaigns_with_new_judgments``); return the run ids. A campaign with a run waiting
    joins it rather than queueing a second."""
    return [
        aggregation_run_request(campaign=campaign, trigger=RunTrigger.PERIODIC).pk
        for campaign in campaigns_with_new_judgments()
    ]
