"""Webhook reads: endpoints with their last deliveries, a delivery log, one delivery's attempts."""

from django.db.models import Prefetch, QuerySet

from webhooks.models import Delivery, DeliveryAttempt, Endpoint

RECENT_DELIVERIES = 10


def endpoint_list() -> QuerySet[Endpoint]:
    """Endpoints, newest first, each with its last RECENT_DELIVERIES deliveries and their events
    in ``recent`` (three queries, whatever the number of endpoints)."""
    recent = Delivery.objects.select_related("event").order_by("-created_at", "-id")
    return Endpoint.objects.select_related("created_by").prefetch_related(
        Prefetch("deliveries", queryset=recent[:RECENT_DELIVERIES], to_attr="recent")
    )


def delivery_list(*, endpoint: Endpoint, status: str | None = None) -> QuerySet[Delivery]:
    """The endpoint's deliveries, newest first, with their events."""
    qs = Delivery.objects.filter(endpoint=endpoint).select_related("event")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def delivery_detail() -> QuerySet[Delivery]:
    """Deliveries with their event, endpoint and attempt log, in attempt order."""
    return Delivery.objects.select_related("event", "endpoint").prefetch_related(
        Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
    )
