"""Thin Celery adapters for the annotation app."""

from celery import shared_task
from django.db import OperationalError


@shared_task(
    name="annotation.expire_leases",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def expire_leases() -> None:
    """Give expired leases' slots back to the pool (the rating step also does it, throttled).

    Safe to run twice or concurrently: the sweep locks the lease rows it releases and skips
    rows another sweep holds."""
    from annotation.services.leases import lease_expire_sweep

    lease_expire_sweep()


@shared_task(
    name="annotation.item_load_run",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    # 10,000,000 single items take four to eight minutes on two cores (bench/campaign_items.py).
    soft_time_limit=1800,
    time_limit=1900,
)
def item_load_run(load_id: int) -> None:
    from annotation.services.item_loads import item_load_execute

    item_load_execute(load_id=load_id)


@shared_task(
    name="annotation.sweep_item_loads",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def sweep_item_loads() -> None:
    """Beat: send the item loads whose worker died to a worker again (``SWEEP_EVERY_SECONDS``)."""
    from annotation.services.item_loads import item_loads_requeue

    item_loads_requeue()
