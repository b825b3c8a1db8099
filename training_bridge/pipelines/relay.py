"""The listener ``apps.PipelinesConfig.ready`` subscribes to ``stickerloop.events``.

It runs in the request or task that changed the state, right after its commit, so it does one
thing: put a message on the ``default`` queue for the events a pipeline can wait on. Finding
the pipelines and advancing them happen in the worker (``tasks.on_event``).
"""

from stickerloop import events
from stickerloop.events import Published

WATCHED = frozenset(
    {
        events.DATASET_VERSION_PUBLISHED,
        events.TRAINING_JOB_SUCCEEDED,
        events.TRAINING_JOB_FAILED,
        events.TRAINING_JOB_CANCELLED,
    }
)


def event_relay(event: Published) -> None:
    if event.name not in WATCHED:
        return
    from training_bridge.pipelines import tasks

    tasks.on_event.delay(event.name, event.object_type, event.object_id)
