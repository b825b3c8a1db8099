"""Running a pipeline: advancing it stage by stage as its versions are published and its jobs
and experiments end, failing it at a stage with the reason, and resuming it from there.

``pipeline_advance`` reads where the current stage stands from the rows it links (the rule's
versions, the job, the experiment) and moves on as far as it can, under the pipeline's row
lock. It holds no state of its own beyond the stages, so a message delivered twice, or two
workers advancing at once, fire each stage once: the second finds the stage running already.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.models import ModelKind
from stickerloop.errors import ServiceConflict
from training_bridge.experiments.models import ExperimentStatus
from training_bridge.experiments.services.experiments import ArmSpec, experiment_create
from training_bridge.jobs.evaluation import evaluation_prompt_set_default
from training_bridge.jobs.lifecycle import training_job_resume
from training_bridge.jobs.models import JobStatus
from training_bridge.jobs.triggers import training_trigger_create, training_trigger_fire
from training_bridge.models import (
    DatasetVersion,
    TriggerOrigin,
    TriggerStatus,
    VersionStatus,
)
from training_bridge.pipelines import tasks as pipeline_tasks
from training_bridge.pipelines.models import (
    Pipeline,
    PipelineStage,
    PipelineStatus,
    StageKind,
    StageStatus,
)
from training_bridge.recipes.spec import RECIPE_ROLES


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def _set(stage: PipelineStage, status: str, **fields) -> None:
    stage.status = status
    for name, value in fields.items():
        setattr(stage, name, value)
    if status in (StageStatus.SUCCEEDED, StageStatus.FAILED):
        stage.finished_at = timezone.now()
    stage.save()


def _fail(stage: PipelineStage, reason: str) -> None:
    _set(stage, StageStatus.FAILED, error=reason)


def _base_model(stage: PipelineStage):
    """A training or evaluation stage's base: the model version given, or the model the base
    stage trained (which, being earlier, has succeeded)."""
    if stage.base_model_version_id is not None:
        return stage.base_model_version
    return stage.base_stage.job.output_model_version


def _inputs(stage: PipelineStage, stages: list[PipelineStage]) -> dict[str, PipelineStage]:
    """Each of the recipe's roles → the earlier dataset stage ``inputs`` names for it, else the
    nearest earlier dataset stage that fills it."""
    found: dict[str, PipelineStage] = {}
    for earlier in stages[: stage.position]:
        if earlier.kind == StageKind.DATASET and earlier.role in RECIPE_ROLES[stage.recipe]:
            found[earlier.role] = earlier
    by_name = {earlier.name: earlier for earlier in stages[: stage.position]}
    return found | {role: by_name[name] for role, name in stage.inputs.items()}


def _published_version(stage: PipelineStage) -> DatasetVersion | None:
    """The version that completes a dataset stage: the one given, or the rule's first version
    published since the stage began waiting."""
    if stage.dataset_version_id is not None:
        return stage.dataset_version
    return (
        DatasetVersion.objects.filter(
            rule_id=stage.rule_id,
            status=VersionStatus.PUBLISHED,
            published_at__gte=stage.started_at,
        )
        .order_by("published_at", "id")
        .first()
    )


def _start_training(stage: PipelineStage, stages: list[PipelineStage], pipeline: Pipeline) -> None:
    """Fire the stage through a training trigger on its inputs' latest version, or, on a
    resume, fire its failed trigger again or resume its failed job."""
    if stage.job_id is not None:
        if stage.job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            try:
                with transaction.atomic():
                    stage.job = training_job_resume(job=stage.job, resumed_by=pipeline.created_by)
            except (ServiceConflict, ValidationError) as exc:
                return _fail(stage, f"Job {stage.job_id} could not resume: {_error_text(exc)}")
        return _set(stage, StageStatus.RUNNING)
    try:
        trigger = _fire(stage, stages, pipeline)
    except ServiceConflict as exc:
        return _fail(stage, f"The training trigger could not fire: {exc}")
    if trigger.status == TriggerStatus.FIRED:
        return _set(stage, StageStatus.RUNNING, job_id=trigger.job_id, error="")
    return _fail(stage, f"The training trigger failed: {trigger.error}")


def _fire(stage: PipelineStage, stages: list[PipelineStage], pipeline: Pipeline):
    """The stage's training trigger, fired: its failed one again, or a new one."""
    if stage.training_trigger_id is not None:
        trigger = training_trigger_fire(trigger=stage.training_trigger)
    else:
        inputs = _inputs(stage, stages)
        # The trigger hangs on the version whose publish completed the inputs: the latest.
        role, fired_on = max(inputs.items(), key=lambda item: item[1].position)
        trigger = training_trigger_create(
            version=fired_on.dataset_version,
            origin=TriggerOrigin.PIPELINE,
            requested_by=pipeline.created_by,
            trigger={
                "recipe": stage.recipe,
                "base_model_version_id": _base_model(stage).pk,
                "params": stage.params,
                "role": role,
                "datasets": {
                    other: source.dataset_version_id
                    for other, source in inputs.items()
                    if other != role
                },
                "evaluate": stage.evaluate,
                "name": f"{pipeline.name} · {stage.name}",
                "pipeline": pipeline.pk,
                "pipeline_stage": stage.pk,
            },
        )
    # Kept whatever the outcome: a resume fires this same trigger again.
    stage.training_trigger = trigger
    return trigger


def _start_evaluation(
    stage: PipelineStage, stages: list[PipelineStage], pipeline: Pipeline
) -> None:
    by_name = {s.name: s for s in stages}
    base = _base_model(stage)
    arms = [ArmSpec(model_version=base, label=f"base: {base.name}", is_base=True)]
    arms += [
        ArmSpec(model_version=by_name[name].job.output_model_version, label=name)
        for name in stage.arms
    ]
    prompt_set = stage.prompt_set
    if base.kind == ModelKind.IMAGE and prompt_set is None:
        prompt_set = evaluation_prompt_set_default()
    try:
        with transaction.atomic():
            experiment = experiment_create(
                name=f"Pipeline {pipeline.pk} · {pipeline.name} · {stage.name} · "
                f"attempt {stage.attempts}",
                arms=arms,
                seeds=stage.seeds,
                prompt_set=prompt_set if base.kind == ModelKind.IMAGE else None,
                description=f"Stage {stage.position} ({stage.name}) of pipeline {pipeline.pk}.",
                created_by=pipeline.created_by,
            )
    except ValidationError as exc:
        return _fail(stage, f"The experiment was refused: {_error_text(exc)}")
    _set(stage, StageStatus.RUNNING, experiment=experiment, error="")


def _start(stage: PipelineStage, stages: list[PipelineStage], pipeline: Pipeline) -> None:
    """Start a pending stage. Assumes the caller holds the pipeline row locked."""
    stage.attempts += 1
    stage.started_at = timezone.now()
    stage.error = ""
    if stage.kind == StageKind.DATASET:
        return _set(stage, StageStatus.WAITING)
    if stage.kind == StageKind.TRAINING:
        return _start_training(stage, stages, pipeline)
    return _start_evaluation(stage, stages, pipeline)


def _check(stage: PipelineStage) -> bool:
    """Settle a waiting or running stage from what it links; True while an experiment it
    waits on is still generating (nothing announces that: the caller polls)."""
    if stage.kind == StageKind.DATASET:
        version = _published_version(stage)
        if version is not None:
            _set(stage, StageStatus.SUCCEEDED, dataset_version=version)
        return False
    if stage.kind == StageKind.TRAINING:
        job = stage.job
        if job.status == JobStatus.SUCCEEDED:
            _set(stage, StageStatus.SUCCEEDED)
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            _fail(stage, f"Job {job.pk} {job.status}: {job.error or 'no reason given'}")
        return False
    experiment = stage.experiment
    if experiment.status == ExperimentStatus.RATING:
        _set(stage, StageStatus.SUCCEEDED)
    elif experiment.status == ExperimentStatus.FAILED:
        _fail(stage, f"Experiment {experiment.pk} failed: {experiment.error}")
    return experiment.status == ExperimentStatus.GENERATING


@transaction.atomic
def pipeline_advance(*, pipeline_id: int) -> bool:
    """Move a running pipeline on as far as its stages allow: start the current stage if it is
    pending, settle it if what it waits on has ended, and go on to the next after a success.
    A failed stage fails the pipeline with the stage's reason. True while an evaluation
    stage's experiment is still generating (poll again), else False.

    Safe to call any number of times, from any number of workers at once: the pipeline's row
    is locked for the whole step, and each stage is started once (it is no longer pending).
    """
    pipeline = Pipeline.objects.select_for_update().filter(pk=pipeline_id).first()
    if pipeline is None or pipeline.status != PipelineStatus.RUNNING:
        return False
    stages = list(
        PipelineStage.objects.filter(pipeline=pipeline)
        .select_related(
            "dataset_version",
            "base_model_version",
            "base_stage__job__output_model_version",
            "training_trigger__version",
            "job__output_model_version",
            "experiment",
            "prompt_set",
        )
        .order_by("position")
    )
    while True:
        stage = stages[pipeline.current_position]
        if stage.status == StageStatus.PENDING:
            _start(stage, stages, pipeline)
        poll = False
        if stage.status in (StageStatus.WAITING, StageStatus.RUNNING):
            poll = _check(stage)
        if stage.status == StageStatus.FAILED:
            pipeline.status = PipelineStatus.FAILED
            pipeline.error = f"Stage {stage.position} ({stage.name}): {stage.error}"
            pipeline.save(update_fields=["status", "error", "updated_at"])
            return False
        if stage.status != StageStatus.SUCCEEDED:
            pipeline.save(update_fields=["updated_at"])
            return poll
        if pipeline.current_position + 1 == len(stages):
            pipeline.status = PipelineStatus.SUCCEEDED
            pipeline.finished_at = timezone.now()
            pipeline.save(update_fields=["status", "finished_at", "updated_at"])
            return False
        pipeline.current_position += 1
        pipeline.save(update_fields=["current_position", "updated_at"])


@transaction.atomic
def pipeline_resume(*, pipeline: Pipeline) -> Pipeline:
    """Restart a failed pipeline from the stage it failed at; the worker starts the stage
    again (``pipeline_advance``): a failed trigger fires again, a failed or cancelled job
    resumes from its checkpoint, an evaluation opens a new experiment.

    Raises:
        ServiceConflict: the pipeline is not failed.
    """
    pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    if pipeline.status != PipelineStatus.FAILED:
        raise ServiceConflict(
            f"Pipeline {pipeline.pk} is {pipeline.status}; only a failed pipeline resumes."
        )
    stage = PipelineStage.objects.select_for_update().get(
        pipeline=pipeline, position=pipeline.current_position
    )
    stage.status = StageStatus.PENDING
    stage.error = ""
    stage.finished_at = None
    if stage.kind == StageKind.EVALUATION:
        # The failed experiment stays where it is, listed; the new attempt opens its own.
        stage.experiment = None
    stage.save()
    pipeline.status = PipelineStatus.RUNNING
    pipeline.error = ""
    pipeline.save(update_fields=["status", "error", "updated_at"])
    pipeline_tasks.advance.delay_on_commit(pipeline.pk)
    return pipeline
