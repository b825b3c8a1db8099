"""The listener ``apps.WebhooksConfig.ready`` subscribes to ``stickerloop.events``.

It runs in the request or task that changed the state, right after its commit, so it does one
thing: put a message on the ``default`` queue. Finding the endpoints, storing the event and
sending happen in the worker (``tasks.record_event``, then ``tasks.deliver``).
"""

from stickerloop.events import Published


def event_relay(event: Published) -> None:
    from webhooks import tasks

    tasks.record_event.delay(
        str(event.id),
        event.name,
        event.object_type,
        event.object_id,
        event.occurred_at.isoformat(),
        event.data,
    )
