"""Recovering chunks whose worker died: the beat sweep requeues them without waiting for the
broker's visibility timeout."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generation import tasks as generation_tasks
from generation.models import ChunkStatus, GenerationChunk

logger = logging.getLogger(__name__)


@transaction.atomic
def generation_chunks_requeue(*, now: datetime | None = None) -> list[int]:
    """Requeue the chunks whose worker is gone, and return their ids.

    Gone: RUNNING with a heartbeat older than ``SWEEP_STALE_SECONDS`` (the worker died
    mid-chunk), or QUEUED for longer than ``SWEEP_QUEUED_SECONDS`` (a worker took the message
    and died before claiming it). Each goes back to QUEUED with a fresh heartbeat, so the next
    sweep leaves it alone for as long again, and gets a new message after commit. The claim
    skips a chunk that is running with a fresh heartbeat, so this message and a late
    redelivery of the old one run the chunk once; stored candidates are skipped, so what the
    dead worker made is not made twice. Rows locked by a claim in progress are skipped.
    """
    now = now or timezone.now()
    stale = Q(
        status=ChunkStatus.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=settings.SWEEP_STALE_SECONDS),
    )
    lost = Q(
        status=ChunkStatus.QUEUED,
        heartbeat_at__lt=now - timedelta(seconds=settings.SWEEP_QUEUED_SECONDS),
    )
    ids = list(
        GenerationChunk.objects.select_for_update(skip_locked=True)
        .filter(stale | lost)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    GenerationChunk.objects.filter(pk__in=ids).update(status=ChunkStatus.QUEUED, heartbeat_at=now)
    for chunk_id in ids:
        generation_tasks.run_chunk.delay_on_commit(chunk_id)
    logger.warning("requeued generation chunks %s (their worker stopped)", ids)
    return ids
