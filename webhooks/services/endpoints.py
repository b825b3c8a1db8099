"""Endpoints: register, edit, rotate the secret, enable, disable, delete.

The one owner of ``Endpoint`` rows, apart from the failure count and the automatic disabling,
which the delivery state machine moves (``services/deliveries.py``). Every check that refuses
input raises ``ValidationError`` naming the field: ``url`` (not http(s), does not resolve, or
resolves to a non-public address without ``WEBHOOK_ALLOW_PRIVATE``), ``events`` (none, or a
name no endpoint can subscribe to), ``overlap_hours``.
"""

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from stickerloop.errors import ServiceConflict
from webhooks.addresses import AddressRefused, check_url
from webhooks.catalog import SUBSCRIBABLE, unknown_events
from webhooks.models import SECRET_PREFIX, Delivery, Endpoint
from webhooks.signing import new_secret

MAX_URL_CHARS = 2000
MAX_OVERLAP_HOURS = 7 * 24


def _check_url(url) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError({"url": ["Give the URL the events are POSTed to."]})
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise ValidationError({"url": [f"At most {MAX_URL_CHARS} characters."]})
    try:
        check_url(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    except AddressRefused as exc:
        raise ValidationError({"url": [str(exc)]}) from exc
    return url


def _check_events(names) -> list[str]:
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValidationError({"events": ["Give a list of event names."]})
    if not names:
        raise ValidationError(
            {"events": [f"Choose at least one event: {', '.join(SUBSCRIBABLE)}."]}
        )
    unknown = unknown_events(names)
    if unknown:
        raise ValidationError(
            {
                "events": [
                    f"Unknown event(s): {', '.join(map(repr, unknown))}. Known: "
                    f"{', '.join(SUBSCRIBABLE)}."
                ]
            }
        )
    # The catalog's order, once each: the page and the API show the same list.
    return [name for name in SUBSCRIBABLE if name in names]


@transaction.atomic
def endpoint_create(
    *,
    url: str,
    events: Sequence[str],
    description: str = "",
    created_by: AbstractBaseUser | None = None,
) -> tuple[Endpoint, str]:
    """Register an endpoint; returns it with its secret, which no later answer shows again."""
    endpoint = Endpoint(
        url=_check_url(url),
        events=_check_events(events),
        description=(description or "").strip(),
        secret=new_secret(SECRET_PREFIX),
        created_by=created_by,
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint, endpoint.secret


def _locked(endpoint: Endpoint) -> Endpoint:
    return Endpoint.objects.select_for_update().get(pk=endpoint.pk)


@transaction.atomic
def endpoint_update(
    *,
    endpoint: Endpoint,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
) -> Endpoint:
    """Change what was given of the URL, the events and the description."""
    endpoint = _locked(endpoint)
    if url is not None:
        endpoint.url = _check_url(url)
    if events is not None:
        endpoint.events = _check_events(events)
    if description is not None:
        endpoint.description = description.strip()
    endpoint.full_clean()
    endpoint.save()
    return endpoint


@transaction.atomic
def endpoint_secret_rotate(
    *, endpoint: Endpoint, overlap_hours: int | None = None
) -> tuple[Endpoint, str]:
    """Give the endpoint a new secret; returns it with the secret (shown this once).

    For ``overlap_hours`` (default ``WEBHOOK_SECRET_OVERLAP_HOURS``) deliveries carry a signature
    by the old secret too, so the receiver can switch without missing one; 0 drops the old
    secret at once. Rotating again within an overlap drops the oldest secret.
    """
    hours = settings.WEBHOOK_SECRET_OVERLAP_HOURS if overlap_hours is None else overlap_hours
    if isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= MAX_OVERLAP_HOURS:
        raise ValidationError(
            {"overlap_hours": [f"Must be an integer from 0 to {MAX_OVERLAP_HOURS}."]}
        )
    endpoint = _locked(endpoint)
    if hours:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = timezone.now() + timedelta(hours=hours)
    else:
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new_secret(SECRET_PREFIX)
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    return endpoint, endpoint.secret


@transaction.atomic
def endpoint_enable(*, endpoint: Endpoint) -> Endpoint:
    """Deliver to the endpoint again, with a clean failure count. Deliveries that failed while
    it was disabled stay failed; redeliver them from the delivery log."""
    endpoint = _locked(endpoint)
    if endpoint.is_active:
        raise ServiceConflict(f"Endpoint {endpoint.pk} is enabled already.")
    endpoint.is_active = True
    endpoint.consecutive_failures = 0
    endpoint.disabled_at = None
    endpoint.disabled_reason = ""
    endpoint.save(
        update_fields=[
            "is_active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "updated_at",
        ]
    )
    return endpoint


def endpoint_disable_locked(endpoint: Endpoint, *, reason: str) -> None:
    """Stop delivering to ``endpoint``; its pending deliveries fail at their next attempt.
    Assumes: in a transaction, the endpoint row locked, the endpoint active."""
    endpoint.is_active = False
    endpoint.disabled_at = timezone.now()
    endpoint.disabled_reason = reason[:500]
    endpoint.save(update_fields=["is_active", "disabled_at", "disabled_reason", "updated_at"])


@transaction.atomic
def endpoint_disable(
    *, endpoint: Endpoint, disabled_by: AbstractBaseUser | None = None
) -> Endpoint:
    endpoint = _locked(endpoint)
    if not endpoint.is_active:
        raise ServiceConflict(f"Endpoint {endpoint.pk} is disabled already.")
    who = disabled_by.get_username() if disabled_by is not None else "the system"
    endpoint_disable_locked(endpoint, reason=f"Disabled by {who}.")
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete the endpoint with its deliveries and their log (a message already queued for one
    of them finds no row and does nothing). The deliveries are locked before the endpoint, in
    the order the delivery state machine takes them."""
    list(Delivery.objects.select_for_update().filter(endpoint=endpoint).values_list("pk"))
    _locked(endpoint).delete()
