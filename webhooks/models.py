"""Endpoints, the events sent to them, one delivery per event and endpoint, and its attempts.

A delivery is a small state machine (``services/deliveries.py`` owns it)::

    pending ──claim──► sending ──2xx──► succeeded
       ▲                  │
       └──── failure, ────┤ failure after the retry window, or the endpoint disabled
             retry due    ▼
                        failed         (redeliver: succeeded | failed → pending)

Each try is a ``DeliveryAttempt`` row: the delivery log (status code, latency, response excerpt).
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from webhooks.catalog import EventType

SECRET_PREFIX = "whsec_"


class Endpoint(models.Model):
    """A URL outside that receives the events it subscribes to, signed with its secret.

    The secret is stored as it is, since signing needs it, and shown only in the answer that
    made it (creation or rotation). During a rotation's overlap the previous secret signs too.
    """

    url = models.URLField(max_length=2000, help_text="http(s) URL the events are POSTed to.")
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="The event types delivered to this endpoint.")
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until then the previous secret signs deliveries too."
    )
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Failed attempts since the last successful one."
    )
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(previous_secret="") & Q(previous_secret_expires_at__isnull=True))
                | (~Q(previous_secret="") & Q(previous_secret_expires_at__isnull=False)),
                name="webhook_endpoint_previous_secret_has_expiry",
            ),
            models.CheckConstraint(
                condition=Q(is_active=False)
                | (Q(disabled_at__isnull=True) & Q(disabled_reason="")),
                name="webhook_endpoint_active_not_disabled",
            ),
            models.CheckConstraint(
                condition=Q(secret__startswith=SECRET_PREFIX), name="webhook_endpoint_secret_prefix"
            ),
        ]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """One event as the endpoints receive it. ``event_id`` is the id in the body: the same on
    every attempt and redelivery, so that receivers can drop what they have seen."""

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=64, choices=EventType.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.BigIntegerField()
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(help_text="When the state changed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.object_type} {self.object_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its next attempt"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed"


TERMINAL_DELIVERY_STATUSES = (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)


class Delivery(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started so far.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sending_since = models.DateTimeField(
        null=True, blank=True, help_text="When the attempt in flight started."
    )
    window_started_at = models.DateTimeField(
        help_text="Retries stop WEBHOOK_RETRY_HOURS after this (creation or redelivery)."
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once"),
            models.CheckConstraint(
                condition=~Q(status=DeliveryStatus.PENDING) | Q(next_attempt_at__isnull=False),
                name="webhook_delivery_pending_has_next_attempt",
            ),
            models.CheckConstraint(
                condition=~Q(status=DeliveryStatus.SENDING)
                | (Q(sending_since__isnull=False) & Q(attempts__gte=1)),
                name="webhook_delivery_sending_since",
            ),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_recent"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_DELIVERY_STATUSES


class DeliveryAttempt(models.Model):
    """One POST: what came back (or why nothing did) and how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="webhook_attempt_number_once"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="webhook_attempt_number_gte_1"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
