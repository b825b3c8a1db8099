"""Item loads: a selection's items added by a worker, for selections too large for a request.

A web request has a minute at most (gunicorn's timeout in production); 1,000,000 single items
take 20 to 40 s to add on two cores and 10,000,000 four to eight minutes, depending on the hour
(``bench/campaign_items.py``).
So the request only checks the selection's fields and queues an ``ItemLoad``; the worker adds
the items with ``campaign_items_from_selection`` and settles the load in the same transaction.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from annotation.models import Campaign, CampaignStatus, ItemLoad, LoadStatus
from annotation.services.campaigns import campaign_lock
from annotation.services.items import (
    campaign_items_from_selection,
    selection_check,
    selection_size,
)
from stickerloop import events
from stickerloop.errors import ServiceConflict
from stickerloop.lifecycle import claim, lock_unfinished, mark_finished

logger = logging.getLogger(__name__)

ENDED = (LoadStatus.SUCCEEDED, LoadStatus.FAILED)


def too_large_for_a_request(*, campaign: Campaign, **selection) -> str:
    """Why a web request may not add the selection's items itself, "" when it may: a selection
    of more candidates than ``settings.CAMPAIGN_SYNC_MAX_ITEMS`` goes to an item load. Raises
    ValidationError for a selection whose fields are wrong."""
    limit = settings.CAMPAIGN_SYNC_MAX_ITEMS
    size = selection_size(selection_check(campaign=campaign, **selection))
    if size <= limit:
        return ""
    load_url = reverse("api-campaign-items-load", args=[campaign.pk])
    return (
        f"The selection holds {size:,} candidates; a request adds items from at most {limit:,} "
        f"(STICKERLOOP_CAMPAIGN_SYNC_MAX_ITEMS). Queue an item load instead: POST {load_url} "
        "with the same fields."
    )


@transaction.atomic
def item_load_request(
    *,
    campaign: Campaign,
    requested_by: AbstractBaseUser | None = None,
    batches: Sequence[int] = (),
    model_versions: Sequence[int] = (),
    prompt_tags: Sequence[str] = (),
    candidate_kind: str | None = None,
    group_size: int | None = None,
    seed: int | None = None,
) -> ItemLoad:
    """Queue the selection's items to be added by a worker (the ``default`` queue, after
    commit). The fields are checked now (ValidationError naming the field), and a closed
    campaign refuses (ServiceConflict); what the candidates allow is the worker's to find, and a
    load that adds nothing ends FAILED saying why."""
    from annotation import tasks

    selection = selection_check(
        campaign=campaign,
        batches=batches,
        model_versions=model_versions,
        prompt_tags=prompt_tags,
        candidate_kind=candidate_kind,
        group_size=group_size,
    )
    campaign = campaign_lock(campaign)
    if campaign.status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed.")
    load = ItemLoad.objects.create(
        campaign=campaign,
        requested_by=requested_by,
        selection={**selection.__dict__, "group_size": group_size, "seed": seed},
    )
    tasks.item_load_run.delay_on_commit(load.pk)
    return load


def _load_settle(load_id: int, *, error: str) -> ItemLoad | None:
    """Record why a load failed; None, and nothing written, when it has ended already."""
    with transaction.atomic():
        load = lock_unfinished(ItemLoad.objects.all(), load_id, finished=ENDED)
        if load is None:
            return None
        mark_finished(load, status=LoadStatus.FAILED, error=error)
        _announce(load)
    return load


def _announce(load: ItemLoad) -> None:
    """Tell the outside world how the load ended, once its transaction commits."""
    if load.status == LoadStatus.SUCCEEDED:
        name, fact = events.ITEM_LOAD_SUCCEEDED, {"items_created": load.items_created}
    else:
        name, fact = events.ITEM_LOAD_FAILED, {"error": load.error}
    data = {"campaign": load.campaign_id, **fact}
    events.publish(name, object_type="item_load", object_id=load.pk, data=data)


def item_load_execute(*, load_id: int) -> ItemLoad | None:
    """Claim the load, add its items and settle it; None when it has ended already (idempotent).

    The items and the SUCCEEDED status commit in one transaction, which holds the load's row
    locked throughout: a second worker given the same load (a redelivered message) waits, then
    finds it ended. A worker that dies part way leaves no items, and the load RUNNING until the
    broker gives its message out again.
    """
    if claim(ItemLoad.objects.all(), load_id, finished=ENDED, keep_started_at=True) is None:
        return None
    try:
        with transaction.atomic():
            load = lock_unfinished(
                ItemLoad.objects.select_related("campaign"), load_id, finished=ENDED
            )
            if load is None:
                return None
            items = campaign_items_from_selection(campaign=load.campaign, **load.selection)
            added = items.count() if isinstance(items, QuerySet) else len(items)
            mark_finished(load, status=LoadStatus.SUCCEEDED, fields={"items_created": added})
            _announce(load)
            return load
    except ValidationError as exc:
        reasons = [m for messages in exc.message_dict.values() for m in messages]
        return _load_settle(load_id, error=" ".join(reasons))
    except ServiceConflict as exc:
        return _load_settle(load_id, error=str(exc))
    except Exception as exc:
        # Whatever broke, the load records why and ends FAILED rather than staying RUNNING.
        logger.exception("item load %s failed", load_id)
        return _load_settle(load_id, error=f"{type(exc).__name__}: {exc}"[:2000])


@transaction.atomic
def item_loads_requeue(*, now: datetime | None = None) -> list[int]:
    """Send the loads whose worker is gone to a worker again, and return their ids.

    Gone: RUNNING but not locked (a live load holds its row locked from the start of its
    insert to its commit; a killed worker's transaction let go of it, and took its items with
    it), once it started over ``SWEEP_STALE_SECONDS`` ago; or QUEUED for longer than
    ``SWEEP_QUEUED_SECONDS`` (a worker took the message and died before claiming it). A message
    for a load that runs or has ended is a no-op (``item_load_execute``), so a second one is
    harmless. Without row locks (SQLite) a running load cannot be told from a dead one, and
    only the queued ones are sent again.
    """
    from annotation import tasks

    now = now or timezone.now()
    gone = ItemLoad.objects.filter(
        status=LoadStatus.QUEUED,
        created_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_SECONDS),
    )
    if connection.features.has_select_for_update_skip_locked:
        stale = now - timedelta(seconds=settings.SWEEP_STALE_SECONDS)
        gone = gone | ItemLoad.objects.filter(status=LoadStatus.RUNNING, started_at__lt=stale)
    load_ids = list(
        gone.order_by("pk").select_for_update(skip_locked=True).values_list("pk", flat=True)
    )
    for load_id in load_ids:
        logger.warning("item load %s has no live worker; sent again", load_id)
        tasks.item_load_run.delay_on_commit(load_id)
    return load_ids
