"""Thin Celery adapters for webhooks, on the ``default`` queue: take ids, call a service.

``deliver`` makes one attempt; the service queues the next one (with its countdown) when the
attempt failed, so Celery's own retry is not used: the schedule and the attempt count live in
the delivery row, where the page and the sweep see them.
"""

import uuid

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils.dateparse import parse_datetime

# A POST lasts at most about two timeouts (connect, then the answer); the rest is the database.
_DELIVER_SOFT_LIMIT = 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 30


@shared_task(
    name="webhooks.record_event",
    acks_late=True,
    ignore_result=True,
    # Only a lost database connection is worth retrying; recording is idempotent on the id.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=60,
    time_limit=90,
)
def record_event(
    event_id: str, name: str, object_type: str, object_id: int, occurred_at: str, data: dict
) -> None:
    from webhooks.services.events import event_record

    event_record(
        event_id=uuid.UUID(event_id),
        name=name,
        object_type=object_type,
        object_id=object_id,
        occurred_at=parse_datetime(occurred_at),
        data=data,
    )


@shared_task(
    name="webhooks.deliver",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=_DELIVER_SOFT_LIMIT,
    time_limit=_DELIVER_SOFT_LIMIT + 30,
)
def deliver(delivery_id: int, attempt: int) -> None:
    from webhooks.services.deliveries import delivery_attempt

    delivery_attempt(delivery_id=delivery_id, number=attempt)


@shared_task(
    name="webhooks.sweep",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def sweep() -> None:
    """Beat: send again the deliveries whose worker or message was lost."""
    from webhooks.services.deliveries import deliveries_recover

    deliveries_recover()
