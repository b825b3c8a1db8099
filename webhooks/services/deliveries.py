"""The delivery state machine (see ``webhooks.models``): claim an attempt, send it, settle it,
schedule the retry; redeliver; recover attempts whose worker died.

Delivery is at least once. An attempt is claimed and committed before the POST goes out, and
settled after the answer; a worker killed in between leaves the delivery SENDING, and it is sent
again (the same body, the same event id) once it is stale. The receiver may well have acted on
the first POST, so it can see an event twice and drops duplicates by the event id.

Every message names the attempt it is for (``delivery_attempt(number=...)``), so a message that
comes twice (the sweep's and the broker's, or a countdown longer than the broker's visibility
timeout) is a no-op the second time: a delivery SENDING with a fresh start belongs to a live
worker, and a PENDING delivery takes only the message for its next attempt.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from stickerloop.errors import ServiceConflict
from webhooks import payload, signing, transport
from webhooks.addresses import AddressRefused, check_url
from webhooks.catalog import EventType
from webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Endpoint,
)
from webhooks.services.endpoints import endpoint_disable_locked

logger = logging.getLogger(__name__)

# No single wait is longer than this, whatever the doubling says: a receiver that is back after
# a night's outage should not wait most of another day for the next try.
MAX_RETRY_DELAY = timedelta(hours=6)
INTERRUPTED = "The worker stopped before an answer came back; the receiver may have got it."


def retry_delay(number: int) -> timedelta:
    """How long after failed attempt ``number`` the next one is due: RETRY_FIRST_SECONDS,
    doubling with each attempt, at most MAX_RETRY_DELAY."""
    seconds = settings.WEBHOOK_RETRY_FIRST_SECONDS * 2 ** min(number - 1, 32)
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def stale_after() -> timedelta:
    """An attempt SENDING for longer than this lost its worker: a POST lasts at most about two
    timeouts (connect, then answer), plus the sweep's margin for a busy machine."""
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + settings.SWEEP_STALE_SECONDS)


def delivery_queue(delivery_id: int, *, number: int, countdown: float = 0.0) -> None:
    """Queue attempt ``number`` of the delivery after the current transaction commits."""
    from webhooks import tasks

    transaction.on_commit(
        lambda: tasks.deliver.apply_async((delivery_id, number), countdown=countdown)
    )


@dataclass(frozen=True)
class Claimed:
    delivery: Delivery
    number: int
    secrets: list[str]


def _interrupted(delivery: Delivery, now: datetime) -> None:
    """Close the log row of the attempt a dead worker left open. Assumes the delivery is
    locked and SENDING."""
    DeliveryAttempt.objects.filter(
        delivery=delivery, number=delivery.attempts, finished_at__isnull=True
    ).update(finished_at=now, error=INTERRUPTED)
    delivery.last_error = INTERRUPTED


def _secrets(endpoint: Endpoint, now: datetime) -> list[str]:
    rotating = endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now
    return [endpoint.secret, endpoint.previous_secret] if rotating else [endpoint.secret]


@transaction.atomic
def _claim(delivery_id: int, number: int) -> Claimed | None:
    """Start attempt ``number``: the delivery SENDING and a log row opened, committed before
    anything is sent. None when this message has nothing to do."""
    now = timezone.now()
    delivery = (
        Delivery.objects.select_for_update(of=("self",))
        .select_related("event", "endpoint")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.is_finished:
        return None
    if delivery.status == DeliveryStatus.SENDING:
        if now - delivery.sending_since <= stale_after():
            return None
        # The message of the dead worker (same number) or the sweep's (the next one).
        if number not in (delivery.attempts, delivery.attempts + 1):
            return None
        _interrupted(delivery, now)
    elif number != delivery.attempts + 1:
        return None
    if not delivery.endpoint.is_active:
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = "The endpoint is disabled."
        delivery.next_attempt_at = None
        delivery.sending_since = None
        delivery.finished_at = now
        delivery.save()
        return None
    delivery.attempts += 1
    delivery.status = DeliveryStatus.SENDING
    delivery.sending_since = now
    delivery.next_attempt_at = None
    delivery.save()
    DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=now)
    return Claimed(delivery, delivery.attempts, _secrets(delivery.endpoint, now))


def _send(claimed: Claimed) -> transport.Answer:
    """POST the event, checking the URL's addresses again first (they may have changed since
    registration) and connecting to exactly those."""
    delivery = claimed.delivery
    try:
        target = check_url(delivery.endpoint.url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    except AddressRefused as exc:
        return transport.Answer(None, 0.0, "", f"Not sent: {exc}"[:500])
    data = payload.body(delivery.event)
    headers = {
        "Content-Type": "application/json",
        "Stickerloop-Event": delivery.event.type,
        "Stickerloop-Event-Id": str(delivery.event.event_id),
        "Stickerloop-Delivery": f"{delivery.pk}.{claimed.number}",
        signing.HEADER: signing.header_value(claimed.secrets, int(time.time()), data),
    }
    return transport.post(target, data, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)


def _describe(answer: transport.Answer) -> str:
    return f"HTTP {answer.status_code}" if answer.status_code is not None else answer.error


def _count_failure(endpoint_id: int, answer: transport.Answer) -> bool:
    """Count a failed attempt against the endpoint; disable it at WEBHOOK_DISABLE_AFTER in a
    row. True when the endpoint is (now) disabled. Assumes: in a transaction."""
    Endpoint.objects.filter(pk=endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint_id)
    if not endpoint.is_active:
        return True
    if endpoint.consecutive_failures < settings.WEBHOOK_DISABLE_AFTER:
        return False
    endpoint_disable_locked(
        endpoint,
        reason=f"Disabled after {endpoint.consecutive_failures} failed attempts in a row "
        f"(the last: {_describe(answer)}).",
    )
    logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, endpoint.disabled_reason)
    return True


@transaction.atomic
def _settle(claimed: Claimed, answer: transport.Answer) -> Delivery:
    """Record the answer in the log and move the delivery on: SUCCEEDED, PENDING with the next
    attempt queued, or FAILED when the retry window is over, the endpoint is disabled or it was
    a test delivery."""
    now = timezone.now()
    DeliveryAttempt.objects.filter(delivery_id=claimed.delivery.pk, number=claimed.number).update(
        finished_at=now,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        response_excerpt=answer.excerpt,
        error=answer.error[:500],
    )
    delivery = Delivery.objects.select_for_update().get(pk=claimed.delivery.pk)
    if delivery.status != DeliveryStatus.SENDING or delivery.attempts != claimed.number:
        # Judged stale and taken over by a later attempt while this one waited: the log keeps
        # what this one got; the later attempt settles the delivery.
        return delivery
    delivery.last_status_code = answer.status_code
    delivery.last_error = answer.error[:500]
    delivery.sending_since = None
    if answer.ok:
        Endpoint.objects.filter(pk=delivery.endpoint_id, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.finished_at = now
        delivery.save()
        return delivery
    disabled = _count_failure(delivery.endpoint_id, answer)
    delay = retry_delay(claimed.number)
    window_ends = delivery.window_started_at + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
    is_test = claimed.delivery.event.type == EventType.TEST
    if disabled or is_test or now + delay > window_ends:
        delivery.status = DeliveryStatus.FAILED
        delivery.finished_at = now
    else:
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = now + delay
        delivery_queue(delivery.pk, number=claimed.number + 1, countdown=delay.total_seconds())
    delivery.save()
    return delivery


def delivery_attempt(*, delivery_id: int, number: int) -> Delivery | None:
    """Make attempt ``number`` of the delivery: claim, POST, settle. None when the message had
    nothing to do (a duplicate, a finished delivery, a disabled endpoint)."""
    claimed = _claim(delivery_id, number)
    if claimed is None:
        return None
    try:
        answer = _send(claimed)
    except Exception as exc:
        # Whatever broke (the soft time limit included), the attempt is settled as failed
        # rather than left SENDING for the sweep to find.
        logger.exception("webhook delivery %s attempt %s broke", delivery_id, claimed.number)
        answer = transport.Answer(None, 0.0, "", f"Not sent: {type(exc).__name__}: {exc}"[:500])
    return _settle(claimed, answer)


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a finished delivery again: the same event (id and body), a fresh retry window."""
    delivery = (
        Delivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .get(pk=delivery.pk)
    )
    if not delivery.is_finished:
        raise ServiceConflict(f"Delivery {delivery.pk} is still {delivery.status}.")
    if not delivery.endpoint.is_active:
        raise ServiceConflict(f"Endpoint {delivery.endpoint_id} is disabled; enable it first.")
    now = timezone.now()
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.window_started_at = now
    delivery.finished_at = None
    delivery.save()
    delivery_queue(delivery.pk, number=delivery.attempts + 1)
    return delivery


@transaction.atomic
def deliveries_recover() -> list[int]:
    """Beat: send again what lost its worker or its message; the delivery ids.

    A delivery SENDING for longer than ``stale_after()`` lost its worker: its open attempt is
    closed as interrupted and it goes back to PENDING with the next attempt queued. A PENDING
    delivery overdue by SWEEP_QUEUED_SECONDS lost its message (a worker killed while holding the
    countdown): it is queued again, and its due time moves to now so that the next sweep leaves
    it alone. A message that turns up late anyway is dropped by the claim.
    """
    now = timezone.now()
    recovered = []
    stale = Delivery.objects.select_for_update(skip_locked=True).filter(
        status=DeliveryStatus.SENDING, sending_since__lt=now - stale_after()
    )
    for delivery in stale:
        _interrupted(delivery, now)
        delivery.status = DeliveryStatus.PENDING
        delivery.sending_since = None
        delivery.next_attempt_at = now
        delivery.save(update_fields=["status", "sending_since", "next_attempt_at", "last_error"])
        delivery_queue(delivery.pk, number=delivery.attempts + 1)
        recovered.append(delivery.pk)
    overdue = Delivery.objects.select_for_update(skip_locked=True).filter(
        status=DeliveryStatus.PENDING,
        next_attempt_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_SECONDS),
    )
    for delivery in overdue:
        delivery.next_attempt_at = now
        delivery.save(update_fields=["next_attempt_at"])
        delivery_queue(delivery.pk, number=delivery.attempts + 1)
        recovered.append(delivery.pk)
    return recovered
