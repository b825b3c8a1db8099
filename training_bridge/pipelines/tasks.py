"""Thin Celery adapters for pipelines: take ids, call a service. State lives in the database."""

from celery import shared_task

# An evaluation stage waits for its experiment's batches: seconds with the tiny models.
ADVANCE_POLL_SECONDS = 3


@shared_task(
    name="pipelines.advance",
    acks_late=True,
    ignore_result=True,
    # Firing a training trigger reads the base model's folder and creates the job; starting an
    # experiment creates a batch per arm: both well under a minute.
    soft_time_limit=300,
    time_limit=330,
)
def advance(pipeline_id: int) -> None:
    from training_bridge.pipelines.services.pipelines import pipeline_advance

    if pipeline_advance(pipeline_id=pipeline_id):
        # An experiment is still generating: look again shortly (its batches always end).
        advance.apply_async((pipeline_id,), countdown=ADVANCE_POLL_SECONDS)


@shared_task(
    name="pipelines.on_event",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=300,
    time_limit=330,
)
def on_event(name: str, object_type: str, object_id: int) -> None:
    from training_bridge.pipelines.selectors import pipelines_waiting_on
    from training_bridge.pipelines.services.pipelines import pipeline_advance

    # Each advances in its own transaction under its row lock; a redelivered message finds
    # them advanced already and does nothing.
    for pipeline_id in pipelines_waiting_on(object_type=object_type, object_id=object_id):
        if pipeline_advance(pipeline_id=pipeline_id):
            advance.apply_async((pipeline_id,), countdown=ADVANCE_POLL_SECONDS)


@shared_task(
    name="pipelines.sweep",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=300,
    time_limit=330,
)
def sweep() -> None:
    """Beat: advance every running pipeline (``SWEEP_EVERY_SECONDS``), so that one whose
    message was lost with a worker, or whose experiment poll was, moves on all the same."""
    from training_bridge.pipelines.selectors import pipelines_running
    from training_bridge.pipelines.services.pipelines import pipeline_advance

    for pipeline_id in pipelines_running():
        pipeline_advance(pipeline_id=pipeline_id)
