"""Recovering exports whose worker died: the beat sweep requeues their unfinished parts without
waiting for the broker's visibility timeout, and removes the scratch the dead run left and the
objects of exports that no run will finish."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from stickerloop.storage import incomplete_set_abandoned, incomplete_set_remove, incomplete_sets
from training_bridge import tasks as curation_tasks
from training_bridge.exports.run import scratch_clean
from training_bridge.models import DatasetExport, TaskStatus

logger = logging.getLogger(__name__)

# An export's objects: exports/v<version>/<export id>-<format>/ (dataset_export_store).
_EXPORT_SET = re.compile(r"exports/v\d+/(\d+)-[a-z]+/")


def dataset_exports_recover(*, now: datetime | None = None) -> list[int]:
    """Requeue the exports whose worker is gone (see ``dataset_exports_requeue``), then remove
    the scratch folders of killed runs on this host and the stored objects of exports no run
    will finish (``dataset_exports_staged_clean``); return the requeued ids."""
    requeued = dataset_exports_requeue(now=now)
    scratch_clean()
    dataset_exports_staged_clean(now=now)
    return requeued


def dataset_exports_staged_clean(*, now: datetime | None = None) -> list[str]:
    """Remove the objects under ``exports/`` of exports without a complete marker that no run
    will finish, and return their prefixes.

    A failed export never runs again (a new one is asked for), and an export row that is gone
    has no run: their objects go once nothing was written there for ``SWEEP_STALE_SECONDS``
    (the part that failed may have a sibling part still storing a file). Queued and running
    exports keep theirs: a requeued part overwrites its own keys, and a finished part's files
    are in the marker the last part writes. A succeeded export has its marker; one without it
    waits ``STORAGE_STAGED_MAX_AGE_SECONDS``. No lock: a failed export's status never changes.
    """
    now = now or timezone.now()
    staged = incomplete_sets("exports/", _EXPORT_SET)
    if not staged:
        return []
    owners = dict(
        DatasetExport.objects.filter(pk__in=[int(s.owner) for s in staged]).values_list(
            "storage_prefix", "status"
        )
    )
    removed = []
    for objects in staged:
        status = owners.get(objects.prefix)
        if status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            continue
        stopped = status != TaskStatus.SUCCEEDED
        if incomplete_set_abandoned(objects, owner_stopped=stopped, now=now):
            reason = f"export {objects.owner} {status}" if status else "no such export"
            incomplete_set_remove(objects, reason=reason)
            removed.append(objects.prefix)
    return removed


@transaction.atomic
def dataset_exports_requeue(*, now: datetime | None = None) -> list[int]:
    """Requeue the unfinished parts of exports whose worker is gone, and return their ids.

    Gone: RUNNING with a heartbeat older than ``SWEEP_STALE_SECONDS`` (every part's worker
    beats the export while it writes, so a stale one has no live part), or QUEUED for longer
    than ``SWEEP_QUEUED_SECONDS`` (a worker took the message and died before claiming). Each
    goes back to QUEUED with a fresh heartbeat and gets a message per part not yet finished,
    after commit; exports of one version in as many parts share the pass of each part. A part run
    twice writes the same deterministic keys, and the export records each part once.
    """
    now = now or timezone.now()
    stale = Q(
        status=TaskStatus.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=settings.SWEEP_STALE_SECONDS),
    )
    lost = Q(
        status=TaskStatus.QUEUED,
        heartbeat_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_SECONDS),
    )
    exports = list(
        DatasetExport.objects.select_for_update(skip_locked=True)
        .filter(stale | lost)
        .order_by("pk")
        .only("pk", "version_id", "parts", "part_results")
    )
    if not exports:
        return []
    ids = [e.pk for e in exports]
    DatasetExport.objects.filter(pk__in=ids).update(status=TaskStatus.QUEUED, heartbeat_at=now)
    passes: dict[tuple[int, int, int], list[int]] = {}
    for export in exports:
        for part in range(export.parts):
            if str(part) not in export.part_results:
                passes.setdefault((export.version_id, export.parts, part), []).append(export.pk)
    for (_, _, part), export_ids in sorted(passes.items()):
        curation_tasks.run_exports.delay_on_commit(export_ids, part)
    logger.warning("requeued dataset exports %s (their worker stopped)", ids)
    return ids
