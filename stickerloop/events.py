"""The hook point through which the apps announce what happened: ``publish`` after commit.

A service that moves a row to a state the outside world cares about (a batch finished, a job
failed, a rater was paused) calls ``publish(name, object_type=..., object_id=...)`` next to the
change. ``publish`` defers to ``transaction.on_commit``: a change that rolls back announces
nothing, and the announcement never sees a state the database does not hold yet.

Why this and not Django signals (STYLE.md: "No signals and no side effects in save()"): a signal
fires from ``save()`` for every write of a model, hidden from the code that writes; here the
service names the event where it changes the state, so reading the service shows every side
effect it has, and the same row saved elsewhere announces nothing. The apps still know nothing of
who listens: this module imports no app, and listeners register themselves with ``subscribe``
from their ``AppConfig.ready()`` (the webhooks app is the one listener today). The names below are
the whole vocabulary, so a typo at a call site fails loudly instead of announcing nothing.

A listener runs inside the request or task that committed the change, after the commit: it must
be quick (the webhooks listener puts one message on the broker) and its failure must not fail
that request, whose work is already stored: ``publish`` logs a listener's exception and goes on.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

BATCH_FINISHED = "batch.finished"
BATCH_FAILED = "batch.failed"
CAMPAIGN_COMPLETED = "campaign.completed"
CAMPAIGN_RESULTS_COMPUTED = "campaign.results_computed"
ITEM_LOAD_SUCCEEDED = "item_load.succeeded"
ITEM_LOAD_FAILED = "item_load.failed"
DATASET_VERSION_PUBLISHED = "dataset_version.published"
EXPORT_READY = "export.ready"
TRAINING_JOB_SUCCEEDED = "training_job.succeeded"
TRAINING_JOB_FAILED = "training_job.failed"
TRAINING_JOB_CANCELLED = "training_job.cancelled"
RATER_PAUSED = "rater.paused"

NAMES = frozenset(
    {
        BATCH_FINISHED,
        BATCH_FAILED,
        CAMPAIGN_COMPLETED,
        CAMPAIGN_RESULTS_COMPUTED,
        ITEM_LOAD_SUCCEEDED,
        ITEM_LOAD_FAILED,
        DATASET_VERSION_PUBLISHED,
        EXPORT_READY,
        TRAINING_JOB_SUCCEEDED,
        TRAINING_JOB_FAILED,
        TRAINING_JOB_CANCELLED,
        RATER_PAUSED,
    }
)


@dataclass(frozen=True)
class Published:
    """One announcement: what happened, to which row, when, plus a few small JSON facts."""

    name: str
    object_type: str
    object_id: int
    data: dict = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=timezone.now)


Listener = Callable[[Published], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Call ``listener`` with every announcement from now on (once, however often it is
    subscribed: ``ready()`` may run more than once in tests)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def publish(name: str, *, object_type: str, object_id: int, data: dict | None = None) -> None:
    """Announce ``name`` for the row ``object_type`` ``object_id`` once the current transaction
    commits (at once outside one). ``data`` must be JSON. Raises ValueError for an unknown name."""
    if name not in NAMES:
        raise ValueError(f"Unknown event name {name!r}.")
    event = Published(name=name, object_type=object_type, object_id=object_id, data=data or {})
    transaction.on_commit(lambda: _announce(event))


def _announce(event: Published) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:
            logger.exception("listener %r failed on %s %s", listener, event.name, event.id)
