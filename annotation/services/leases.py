"""Leases: releasing them, and sweeping the expired ones."""

import time
from collections import Counter, defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import (
    Item,
    Lease,
)


def leases_release(leases) -> int:
    """Mark live leases released and give their slots back. Caller is inside a transaction."""
    rows = list(leases.select_for_update(skip_locked=True).values_list("pk", "item_id"))
    if not rows:
        return 0
    Lease.objects.filter(pk__in=[pk for pk, _ in rows]).update(released=True)
    per_item = Counter(item_id for _, item_id in rows)
    by_count: dict[int, list[int]] = defaultdict(list)
    for item_id, n in per_item.items():
        by_count[n].append(item_id)
    for n, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=sorted(item_ids), is_gold=False).update(
            leased_count=F("leased_count") - n
        )
    return len(rows)


_last_sweep: dict[int, float] = {}


@transaction.atomic
def lease_expire_sweep(*, campaign_id: int | None = None) -> int:
    """Release expired leases (all campaigns, or one); return how many.

    The row stays as the rater's "seen" marker: their slot returns to the pool for other raters,
    and a late submit is still accepted while the item has room.
    """
    leases = Lease.objects.filter(released=False, expires_at__lt=timezone.now())
    if campaign_id is not None:
        leases = leases.filter(campaign_id=campaign_id)
    return leases_release(leases.order_by("item_id"))


def lease_sweep_if_due(campaign_id: int, *, force: bool = False) -> None:
    """Sweep a campaign's expired leases at most every ANNOTATION_LEASE_SWEEP_SECONDS per
    process (a query on the partial ``lease_live`` index); the Celery beat task sweeps too."""
    now = time.monotonic()
    interval = settings.ANNOTATION_LEASE_SWEEP_SECONDS
    if force or now - _last_sweep.get(campaign_id, 0.0) >= interval:
        _last_sweep[campaign_id] = now
        lease_expire_sweep(campaign_id=campaign_id)


def lease_sweep_now(campaign_id: int) -> int:
    """Sweep a campaign's expired leases now; when some were released, the throttled sweep
    counts its interval from here. Returns how many were released."""
    released = lease_expire_sweep(campaign_id=campaign_id)
    if released:
        _last_sweep[campaign_id] = time.monotonic()
    return released
