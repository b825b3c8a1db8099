"""Thin Celery adapters for training jobs: take ids, call a service. State lives in the database."""

from celery import shared_task

# The evaluation batch of the tiny models takes seconds; real models minutes.
EVALUATION_POLL_SECONDS = 3


@shared_task(
    name="training_jobs.run",
    acks_late=True,
    ignore_result=True,
    # No automatic retry: the runner settles every outcome itself (FAILED with the reason), and
    # a worker that dies leaves the job with a heartbeat that goes stale; the sweep requeues it
    # (`training_jobs_requeue`). A run lasts as long as training does.
    soft_time_limit=7 * 24 * 3600,
    time_limit=7 * 24 * 3600 + 300,
)
def run_job(job_id: int, attempt: int) -> None:
    from training_bridge.jobs import execution

    execution.training_job_run(job_id=job_id, attempt=attempt)


@shared_task(
    name="training_jobs.evaluation_advance",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=300,
    time_limit=330,
)
def evaluation_advance(evaluation_id: int) -> None:
    from training_bridge.jobs import evaluation

    if not evaluation.training_job_evaluation_advance(evaluation_id=evaluation_id):
        # The batch is still generating: look again shortly (the batch always ends, in
        # success, failure or cancellation, so this stops).
        evaluation_advance.apply_async((evaluation_id,), countdown=EVALUATION_POLL_SECONDS)


@shared_task(
    name="training_jobs.prepare_external",
    acks_late=True,
    ignore_result=True,
    # Exporting a large version for a cluster takes as long as an export does.
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def prepare_external(job_id: int, attempt: int) -> None:
    from training_bridge.jobs import execution

    execution.training_job_prepare_external(job_id=job_id, attempt=attempt)


@shared_task(
    name="training_jobs.sweep",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def sweep() -> None:
    """Beat: requeue queue jobs whose runner died, and remove the model copies in storage
    that stopped jobs left incomplete (``SWEEP_EVERY_SECONDS``)."""
    from training_bridge.jobs.lifecycle import training_jobs_requeue
    from training_bridge.jobs.output import training_job_outputs_staged_clean

    training_jobs_requeue()
    training_job_outputs_staged_clean()
