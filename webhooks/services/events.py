"""Events: turn an announcement into the events endpoints receive, store each with a delivery
per subscribed endpoint, and queue the first attempts; and the test delivery."""

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from stickerloop import events as announcements
from stickerloop.errors import ServiceConflict
from training_bridge.jobs.selectors import training_job_evaluation_for_campaign
from webhooks.catalog import SUBSCRIBABLE, EventType
from webhooks.models import Delivery, DeliveryStatus, Endpoint, Event
from webhooks.services.deliveries import delivery_queue


def public_events(
    *, name: str, object_type: str, object_id: int, data: dict
) -> list[tuple[str, str, int, dict]]:
    """The (type, object type, object id, data) that endpoints receive for an announcement:
    itself when endpoints can subscribe to it; ``evaluation.ready`` for the training job when
    computed results are those of a job's evaluation campaign; else nothing."""
    if name == announcements.CAMPAIGN_RESULTS_COMPUTED:
        evaluation = training_job_evaluation_for_campaign(campaign_id=object_id)
        if evaluation is None:
            return []
        return [
            (
                EventType.EVALUATION_READY,
                "training_job",
                evaluation.job_id,
                {
                    "evaluation": evaluation.pk,
                    "campaign": object_id,
                    "campaign_status": evaluation.campaign.status,
                    **data,
                },
            )
        ]
    if name in SUBSCRIBABLE:
        return [(name, object_type, object_id, data)]
    return []


def _subscribers(event_type: str) -> list[Endpoint]:
    # In Python: SQLite (``make run``) has no JSON containment lookup, and endpoints are few.
    return [e for e in Endpoint.objects.filter(is_active=True) if event_type in e.events]


def _deliveries_create(event: Event, endpoints: list[Endpoint]) -> list[Delivery]:
    """A delivery of ``event`` to each of ``endpoints`` (once: a second call adds none), each
    first attempt queued after commit; the deliveries not attempted yet."""
    now = timezone.now()
    Delivery.objects.bulk_create(
        [
            Delivery(event=event, endpoint=e, next_attempt_at=now, window_started_at=now)
            for e in endpoints
        ],
        ignore_conflicts=True,
    )
    fresh = list(
        Delivery.objects.filter(
            event=event, endpoint__in=endpoints, status=DeliveryStatus.PENDING, attempts=0
        ).order_by("pk")
    )
    for delivery in fresh:
        delivery_queue(delivery.pk, number=1)
    return fresh


@transaction.atomic
def event_record(
    *,
    event_id: uuid.UUID,
    name: str,
    object_type: str,
    object_id: int,
    occurred_at: datetime,
    data: dict,
) -> list[Delivery]:
    """Store the events an announcement makes and a delivery to every active endpoint that
    subscribes to each; returns the deliveries queued. Nothing is stored for an event no
    endpoint subscribes to.

    Idempotent, for a redelivered message: the event keeps its id (a derived event's id is
    derived from the announcement's), and a delivery is made once per event and endpoint.
    """
    queued = []
    for event_type, kind, pk, facts in public_events(
        name=name, object_type=object_type, object_id=object_id, data=data
    ):
        endpoints = _subscribers(event_type)
        if not endpoints:
            continue
        event, _ = Event.objects.get_or_create(
            event_id=event_id if event_type == name else uuid.uuid5(event_id, event_type),
            defaults={
                "type": event_type,
                "object_type": kind,
                "object_id": pk,
                "data": facts,
                "occurred_at": occurred_at,
            },
        )
        queued += _deliveries_create(event, endpoints)
    return queued


@transaction.atomic
def endpoint_test_send(*, endpoint: Endpoint) -> Delivery:
    """Queue a ``webhook.test`` event to ``endpoint`` alone (one attempt, no retries)."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    if not endpoint.is_active:
        raise ServiceConflict(f"Endpoint {endpoint.pk} is disabled; enable it first.")
    event = Event.objects.create(
        type=EventType.TEST,
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        occurred_at=timezone.now(),
    )
    [delivery] = _deliveries_create(event, [endpoint])
    return delivery
