"""Thin Celery adapters for experiments: take ids, call a service. State lives in the database."""

from celery import shared_task

# The tiny models generate an experiment's batches in seconds; real models take minutes.
ADVANCE_POLL_SECONDS = 3


@shared_task(
    name="experiments.advance",
    acks_late=True,
    ignore_result=True,
    # Opening two campaigns and reading the arms' candidates (diversity reads every sticker
    # once: about a second for a thousand 64-pixel stickers).
    soft_time_limit=600,
    time_limit=660,
)
def advance(experiment_id: int) -> None:
    from training_bridge.experiments.services.experiments import experiment_advance

    if not experiment_advance(experiment_id=experiment_id):
        # A batch is still generating: look again shortly (batches always end, in success,
        # failure or cancellation, so this stops).
        advance.apply_async((experiment_id,), countdown=ADVANCE_POLL_SECONDS)


@shared_task(
    name="experiments.recompute_periodic",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def recompute_periodic() -> None:
    """Beat entry: queue a computation for each experiment with judgments its results miss."""
    from training_bridge.experiments.selectors import experiments_with_new_judgments

    for experiment_id in experiments_with_new_judgments():
        compute_results.delay(experiment_id)


@shared_task(
    name="experiments.compute_results",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=600,
    time_limit=660,
)
def compute_results(experiment_id: int) -> None:
    from stickerloop.errors import ServiceConflict
    from training_bridge.experiments.models import Experiment
    from training_bridge.experiments.services.results import experiment_results_compute

    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        return
    try:
        experiment_results_compute(experiment=experiment)
    except ServiceConflict:
        # Failed or no longer rating since it was queued: nothing to compute.
        return
