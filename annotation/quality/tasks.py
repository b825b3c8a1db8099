"""Thin Celery adapters for quality control: take ids, call a service."""

from celery import shared_task
from django.db import OperationalError

# Only a lost database connection is worth retrying; a failing computation marks its run FAILED.
_TRANSIENT = (OperationalError,)


@shared_task(
    name="quality.aggregate_campaign",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
    # A million judgments take about half a minute on two cores (bench/aggregation.py).
    soft_time_limit=1800,
    time_limit=1900,
)
def aggregate_campaign(run_id: int) -> None:
    from annotation.quality.services.runs import aggregation_run_execute

    aggregation_run_execute(run_id=run_id)


@shared_task(
    name="quality.aggregate_periodic",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def aggregate_periodic() -> None:
    """Beat entry: queue a run for each campaign with new judgments since its last run."""
    from annotation.quality.services.runs import periodic_runs_request

    periodic_runs_request()


@shared_task(
    name="quality.score_gold_judgment",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=60,
    time_limit=90,
)
def score_gold_judgment(judgment_id: int) -> None:
    """For the rating path: score a judgment on a gold item right after it is stored."""
    from annotation.quality.services.gold import judgment_gold_score

    judgment_gold_score(judgment_id=judgment_id)
