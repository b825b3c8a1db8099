"""How a worker takes and settles a long task's row: QUEUED → RUNNING → SUCCEEDED | FAILED | ….

Generation chunks and batches, dataset exports, training jobs and aggregation runs keep their
status in their own ``TextChoices`` (the sets differ: batches also end PARTIAL, exports and runs
cannot be CANCELLED), but all store it in ``status`` with the values ``queued``, ``running``,
``succeeded``, ``failed`` (and ``cancelled``), next to ``started_at``, ``finished_at`` and
``error``. What they share is the claim: lock the row with ``select_for_update``, return early
when it has already ended (the broker redelivered a message, or a late one arrived), then move it
and stamp the time. These helpers are that part; a caller's own checks go between
``lock_unfinished`` and ``mark_running``, or it calls ``claim`` when it has none.
"""

import logging
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections, models, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

RUNNING = "running"

logger = logging.getLogger(__name__)

Row = TypeVar("Row", bound=models.Model)


def lock_unfinished(queryset: QuerySet[Row], pk: int, *, finished: Collection[str]) -> Row | None:
    """The row ``pk`` of ``queryset``, locked until the caller's transaction ends; None when its
    status is one of ``finished``.

    Assumes an open transaction (the lock lasts as long as it). Raises the model's
    ``DoesNotExist`` when there is no such row.
    """
    row = queryset.select_for_update().get(pk=pk)
    if row.status in finished:
        return None
    return row


def mark_running(
    row: models.Model,
    *,
    now: datetime | None = None,
    keep_started_at: bool = False,
    count_attempt: bool = False,
    fields: dict[str, Any] | None = None,
) -> None:
    """Move a locked row to RUNNING in one UPDATE of the changed columns.

    ``started_at`` becomes ``now``, unless ``keep_started_at`` and the row has started before
    (a resumed task keeps its first start). ``count_attempt`` adds one to ``attempts`` in the
    database, so concurrent claims cannot lose a count, and reads the new value back. ``fields``
    are further columns to set in the same UPDATE (a heartbeat, a worker name).
    """
    row.status = RUNNING
    if not (keep_started_at and row.started_at):
        row.started_at = now or timezone.now()
    update = ["status", "started_at"]
    if count_attempt:
        row.attempts = F("attempts") + 1
        update.append("attempts")
    for name, value in (fields or {}).items():
        setattr(row, name, value)
        update.append(name)
    row.save(update_fields=update)
    if count_attempt:
        row.refresh_from_db(fields=["attempts"])


def mark_finished(
    row: models.Model,
    *,
    status: str,
    error: str = "",
    now: datetime | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """Move a locked row to the terminal ``status`` with its ``error`` ("" on success) and
    ``finished_at``, plus ``fields``, in one UPDATE of those columns."""
    row.status = status
    row.error = error
    row.finished_at = now or timezone.now()
    update = ["status", "error", "finished_at"]
    for name, value in (fields or {}).items():
        setattr(row, name, value)
        update.append(name)
    row.save(update_fields=update)


@transaction.atomic
def claim(
    queryset: QuerySet[Row],
    pk: int,
    *,
    finished: Collection[str],
    now: datetime | None = None,
    keep_started_at: bool = False,
    count_attempt: bool = False,
) -> Row | None:
    """Lock the row ``pk`` and mark it RUNNING; None when it has already ended.

    A row found RUNNING is a redelivery after its worker died and is claimed again: the task
    must be idempotent (deterministic keys, unique constraints) for that to be safe.
    """
    row = lock_unfinished(queryset, pk, finished=finished)
    if row is not None:
        mark_running(row, now=now, keep_started_at=keep_started_at, count_attempt=count_attempt)
    return row


def heartbeat_fresh(
    row: models.Model, *, stale_seconds: float, now: datetime | None = None
) -> bool:
    """Whether a RUNNING row's worker showed a sign of life within ``stale_seconds``: then a
    second message for it is a duplicate (the sweep's or the broker's) and must not run it
    again. A row without a heartbeat has none."""
    if row.status != RUNNING or row.heartbeat_at is None:
        return False
    return (now or timezone.now()) - row.heartbeat_at <= timedelta(seconds=stale_seconds)


@contextmanager
def heartbeat(rows: QuerySet, *, every: float | None = None) -> Iterator[None]:
    """Stamp ``heartbeat_at`` on those of ``rows`` that are RUNNING every ``every`` seconds
    (``HEARTBEAT_SECONDS``) while the block runs.

    A thread of its own beats, with its own database connection, so that a long pipeline call
    or a blocking read does not make a live worker look dead; a killed worker's thread dies
    with it, and the sweep sees the row go stale. A failed beat (the database restarting) is
    logged and the next one tried.
    """
    interval = float(every if every is not None else settings.HEARTBEAT_SECONDS)
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    rows.filter(status=RUNNING).update(heartbeat_at=timezone.now())
                except DatabaseError:
                    logger.warning("heartbeat of %s failed", rows.model.__name__, exc_info=True)
        finally:
            # The connections of this thread only (Django keeps them per thread).
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"heartbeat-{rows.model.__name__}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # Bounded: should the caller still hold one of the rows locked in an open transaction,
        # a beat in flight waits on that lock; it ends (a no-op on a settled row) once the
        # caller commits, rather than the caller waiting on it here for ever.
        thread.join(timeout=interval)
