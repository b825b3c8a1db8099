"""A training job's life from the outside: checking and creating it against its recipe,
launching it (the ``train`` queue, or an external cluster), cancelling and resuming it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generation.model_store import model_folder_local
from generation.models import (
    Candidate,
    CandidateKind,
    ModelKind,
    ModelVersion,
    PromptSet,
)
from generation.pipelines import ModelLoadError
from stickerloop import events
from stickerloop.errors import ServiceConflict
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.evaluation import (
    DEFAULT_EVALUATION_SEEDS,
    MAX_EVALUATION_SEEDS,
    MAX_EVALUATION_SOURCES,
)
from training_bridge.jobs.models import (
    JobStatus,
    Launcher,
    Recipe,
    TrainingJob,
    TrainingJobDataset,
)
from training_bridge.models import DatasetVersion, VersionStatus
from training_bridge.recipes.launch import LAUNCH_TOOLS, render_launch_command
from training_bridge.recipes.spec import (
    RECIPE_MODEL_KINDS,
    RECIPE_ROLES,
    ModelFacts,
    SpecError,
    check_dataset_fits,
    check_roles,
    read_model_facts,
    resolve_params,
)

logger = logging.getLogger(__name__)


def job_dir(job: TrainingJob) -> Path:
    return Path(settings.TRAINING_DIR) / f"job-{job.pk}"


def output_dir(job: TrainingJob) -> Path:
    """Where the recipe writes checkpoints and the final model (the new version's URI)."""
    return job_dir(job) / "model"


JOB_END_EVENTS = {
    JobStatus.SUCCEEDED: events.TRAINING_JOB_SUCCEEDED,
    JobStatus.FAILED: events.TRAINING_JOB_FAILED,
    JobStatus.CANCELLED: events.TRAINING_JOB_CANCELLED,
}


def training_job_announce_end(job: TrainingJob) -> None:
    """Announce (after commit) the terminal status the caller has just moved ``job`` to.
    Assumes the caller holds the job row locked in its transaction."""
    events.publish(
        JOB_END_EVENTS[job.status],
        object_type="training_job",
        object_id=job.pk,
        data={"attempt": job.attempt, "output_model_version": job.output_model_version_id},
    )


def job_is_stale(job: TrainingJob) -> bool:
    """Whether a RUNNING job's runner stopped showing signs of life (its worker died)."""
    if job.heartbeat_at is None:
        return True
    return timezone.now() - job.heartbeat_at > timedelta(seconds=settings.TRAINING_STALE_SECONDS)


def _field(spec_field: str) -> str:
    return {"base_model": "base_model_version"}.get(spec_field, spec_field)


def model_facts(version: ModelVersion) -> ModelFacts:
    """The base model's kind and noise schedule, read from its folder's JSON files.

    Raises:
        ValidationError: (``base_model_version``) the folder is missing or not a trainable model.
    """
    try:
        facts = read_model_facts(model_folder_local(version.uri, weights=False))
    except (SpecError, ModelLoadError) as exc:
        raise ValidationError({"base_model_version": [str(exc)]}) from exc
    if facts.kind != version.kind:
        raise ValidationError(
            {
                "base_model_version": [
                    f"Model version {version.name} is registered as {version.kind} "
                    f"but its folder holds a {facts.class_name}."
                ]
            }
        )
    return facts


def _check_job(
    *,
    recipe: str,
    base_model_version: ModelVersion,
    datasets: dict[str, DatasetVersion],
    params: dict,
) -> tuple[ModelFacts | None, dict, dict[str, list[str]]]:
    """Everything the recipe will check, answered now: (facts, resolved params, errors)."""
    errors: dict[str, list[str]] = {}
    if recipe not in Recipe.values:
        return (
            None,
            {},
            {"recipe": [f"Unknown recipe {recipe!r}; use one of {', '.join(Recipe.values)}."]},
        )
    facts = None
    if not base_model_version.is_active:
        errors["base_model_version"] = [f"Model version {base_model_version.name} is retired."]
    else:
        try:
            facts = model_facts(base_model_version)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if facts is not None and facts.kind not in RECIPE_MODEL_KINDS[recipe]:
        errors["base_model_version"] = [
            f"The {recipe} recipe trains {' or '.join(RECIPE_MODEL_KINDS[recipe])} models; "
            f"{base_model_version.name} is an {facts.kind} model."
        ]
        facts = None
    try:
        check_roles(recipe, list(datasets))
    except SpecError as exc:
        errors["datasets"] = [str(exc)]
    for role, version in datasets.items():
        key = f"datasets.{role}"
        if version.status != VersionStatus.PUBLISHED:
            errors[key] = [
                f"Dataset version {version.pk} ({version}) is {version.status}; only "
                "published versions train."
            ]
            continue
        if facts is None or role not in RECIPE_ROLES[recipe]:
            continue
        try:
            check_dataset_fits(
                recipe,
                role,
                purpose=version.purpose,
                kind=version.kind,
                model_kind=facts.kind,
                label=f"version {version.pk} ({version})",
            )
        except SpecError as exc:
            errors[key] = [str(exc)]
    resolved: dict = {}
    if facts is not None:
        try:
            resolved = resolve_params(recipe, params, facts)
        except SpecError as exc:
            errors[_field(exc.field)] = [str(exc)]
    return facts, resolved, errors


def _check_evaluation(
    *,
    kind: str | None,
    prompt_set: PromptSet | None,
    sources: list[Candidate],
    seeds: list | None,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if prompt_set is not None:
        if kind == ModelKind.ANIMATION:
            errors["evaluation_prompt_set"] = [
                "Animation models are evaluated on source "
                "stickers (evaluation_sources), not prompts."
            ]
        elif not prompt_set.is_held_out:
            errors["evaluation_prompt_set"] = [
                f"Prompt set {prompt_set.name!r} is not held out; "
                "evaluation uses held-out prompts only."
            ]
    if sources:
        if kind == ModelKind.IMAGE:
            errors["evaluation_sources"] = [
                "Image models are evaluated on prompts "
                "(evaluation_prompt_set), not source stickers."
            ]
        elif len(sources) > MAX_EVALUATION_SOURCES:
            errors["evaluation_sources"] = [f"At most {MAX_EVALUATION_SOURCES} source stickers."]
        elif any(c.kind != CandidateKind.STICKER for c in sources):
            errors["evaluation_sources"] = ["Evaluation sources must be sticker candidates."]
    if seeds is not None and (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= MAX_EVALUATION_SEEDS
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        errors["evaluation_seeds"] = [
            f"Give 1 to {MAX_EVALUATION_SEEDS} distinct integer seeds from 0 to 2**32 - 1."
        ]
    return errors


@transaction.atomic
def training_job_create(
    *,
    recipe: str,
    base_model_version: ModelVersion,
    datasets: dict[str, DatasetVersion],
    params: dict | None = None,
    name: str = "",
    launcher: str = Launcher.QUEUE,
    launch_options: dict | None = None,
    evaluate: bool = True,
    evaluation_prompt_set: PromptSet | None = None,
    evaluation_sources: list[Candidate] | None = None,
    evaluation_seeds: list[int] | None = None,
    requested_by: AbstractBaseUser | None = None,
    trigger: dict | None = None,
) -> TrainingJob:
    """Check a job against its recipe, store it and launch it.

    ``datasets`` maps each of the recipe's roles (``RECIPE_ROLES``) to a published dataset
    version of a purpose and kind the role takes. ``params`` are the recipe's hyper-parameters
    (checked by the recipe's own rules). ``launcher`` "queue" runs it on the ``train`` queue;
    "external" renders the command and spec for a cluster (``launch_options``: ``tool``
    accelerate|torchrun, ``num_processes``).

    Raises:
        ValidationError: keyed by the field (``recipe``, ``base_model_version``, ``datasets``,
            ``datasets.<role>``, ``params.<name>``, ``evaluation_*``, ``launch_options``);
            nothing is stored.
    """
    params = {} if params is None else params
    facts, resolved, errors = _check_job(
        recipe=recipe, base_model_version=base_model_version, datasets=datasets, params=params
    )
    sources = list(evaluation_sources or [])
    errors.update(
        _check_evaluation(
            kind=facts.kind if facts else base_model_version.kind,
            prompt_set=evaluation_prompt_set,
            sources=sources,
            seeds=evaluation_seeds,
        )
    )
    if launcher not in Launcher.values:
        errors["launcher"] = [f"Unknown launcher {launcher!r}; use queue or external."]
    options = _check_launch_options(launch_options or {}, errors)
    if errors:
        raise ValidationError(errors)
    job = TrainingJob(
        name=name,
        recipe=recipe,
        base_model_version=base_model_version,
        params=resolved,
        launcher=launcher,
        total_steps=resolved["max_train_steps"],
        work_dir="pending",
        evaluate=evaluate,
        evaluation_prompt_set=evaluation_prompt_set,
        evaluation_seeds=list(evaluation_seeds or DEFAULT_EVALUATION_SEEDS),
        trigger={"source": "manual", **(trigger or {})},
        requested_by=requested_by,
        spec={"launch_options": options} if launcher == Launcher.EXTERNAL else {},
    )
    job.full_clean()
    job.save()
    job.work_dir = str(job_dir(job))
    job.save(update_fields=["work_dir"])
    TrainingJobDataset.objects.bulk_create(
        [
            TrainingJobDataset(
                job=job, dataset_version=version, role=role, manifest_sha256=version.manifest_sha256
            )
            for role, version in sorted(
                datasets.items(), key=lambda item: RECIPE_ROLES[recipe].index(item[0])
            )
        ]
    )
    if sources:
        job.evaluation_sources.set(sources)
    _launch(job)
    return job


def _check_launch_options(options: dict, errors: dict[str, list[str]]) -> dict:
    if not isinstance(options, dict):
        errors["launch_options"] = ["Must be an object."]
        return {}
    unknown = sorted(set(options) - {"tool", "num_processes"})
    if unknown:
        errors["launch_options"] = [f"Unknown option(s): {', '.join(unknown)}."]
        return {}
    merged = {"tool": "accelerate", "num_processes": 1, **options}
    try:
        render_launch_command(
            "spec.json", tool=merged["tool"], num_processes=merged["num_processes"]
        )
    except ValueError as exc:
        errors["launch_options"] = [str(exc)]
    if merged["tool"] not in LAUNCH_TOOLS:
        return {}
    return merged


def _launch(job: TrainingJob) -> None:
    """Dispatch a QUEUED job. Assumes the caller holds the job row (or just created it).

    A queue job exports its datasets on the ``train`` queue; an external job gets them, its
    spec and its launch command from ``prepare_external``. Either way the creating request
    does no export work (an export may take minutes).
    """
    if job.launcher == Launcher.QUEUE:
        job_tasks.run_job.delay_on_commit(job.pk, job.attempt)
    else:
        job_tasks.prepare_external.delay_on_commit(job.pk, job.attempt)


@transaction.atomic
def training_job_launch(*, job: TrainingJob) -> TrainingJob:
    """Dispatch a queued job again, e.g. after its queue message was lost with the broker."""
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status != JobStatus.QUEUED:
        raise ServiceConflict(f"Job {job.pk} is {job.status}; only a queued job launches.")
    _launch(job)
    return job


@transaction.atomic
def training_job_cancel(
    *, job: TrainingJob, cancelled_by: AbstractBaseUser | None = None
) -> TrainingJob:
    """Cancel a queued or running job. The runner stops the recipe process within a second
    (it checks the status at every flush); checkpoints are kept, so the job can resume."""
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.is_finished:
        raise ServiceConflict(f"Job {job.pk} has already ended ({job.status}).")
    job.status = JobStatus.CANCELLED
    job.finished_at = timezone.now()
    who = cancelled_by.get_username() if cancelled_by is not None else "the system"
    job.error = f"Cancelled by {who}."
    job.save(update_fields=["status", "finished_at", "error"])
    training_job_announce_end(job)
    return job


@transaction.atomic
def training_job_resume(
    *, job: TrainingJob, resumed_by: AbstractBaseUser | None = None
) -> TrainingJob:
    """Queue a failed, cancelled or orphaned job again; it continues from its last checkpoint.

    A running queue job is orphaned when its heartbeat is older than TRAINING_STALE_SECONDS
    (its worker died). The next attempt gets a new number, so the old attempt's queue message,
    if the broker hands it out again, does nothing; the output is registered once.

    Raises:
        ServiceConflict: the job succeeded, is queued, or is running with a live heartbeat.
        ValidationError: one of its dataset versions was retired since.
    """
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status == JobStatus.SUCCEEDED:
        raise ServiceConflict(f"Job {job.pk} has succeeded; there is nothing to resume.")
    if job.status == JobStatus.QUEUED:
        raise ServiceConflict(f"Job {job.pk} is queued already.")
    if job.status == JobStatus.RUNNING and job.launcher == Launcher.QUEUE and not job_is_stale(job):
        age = (timezone.now() - job.heartbeat_at).total_seconds()
        raise ServiceConflict(
            f"Job {job.pk} is running (last heartbeat {age:.0f} s ago); cancel it first, or wait "
            f"until it has been silent for {settings.TRAINING_STALE_SECONDS} s."
        )
    retired = [
        link
        for link in job.dataset_links.select_related("dataset_version")
        if link.dataset_version.status != VersionStatus.PUBLISHED
    ]
    if retired:
        raise ValidationError(
            {
                "datasets": [
                    f"Dataset version {link.dataset_version_id} ({link.role}) is "
                    f"{link.dataset_version.status}; it can no longer train."
                    for link in retired
                ]
            }
        )
    job.attempt += 1
    job.status = JobStatus.QUEUED
    job.error = ""
    job.finished_at = None
    job.heartbeat_at = None
    job.worker = ""
    job.save(update_fields=["attempt", "status", "error", "finished_at", "heartbeat_at", "worker"])
    _launch(job)
    return job


@transaction.atomic
def training_jobs_requeue(*, now: datetime | None = None) -> list[int]:
    """Requeue the running queue jobs whose runner is gone, and return their ids.

    Gone: a heartbeat older than ``TRAINING_STALE_SECONDS`` (the runner stamps it every
    0.5 s while the recipe runs, and from a thread while its datasets export). Each goes back
    to QUEUED, same attempt, and gets a new message after commit; it resumes from its last
    recorded checkpoint, and its output is registered once. This, not the broker's visibility
    timeout, is what recovers a job: a message that finds the job running with a fresh
    heartbeat is dropped (its runner lives), one that finds it stale takes it over, and if the
    runner dies later this sweep requeues it within ``TRAINING_STALE_SECONDS`` plus
    ``SWEEP_EVERY_SECONDS``, whatever the visibility timeout. Rows locked by a claim or a
    progress report in flight are skipped. External jobs have no runner here and are left alone.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    jobs = list(
        TrainingJob.objects.select_for_update(skip_locked=True)
        .filter(status=JobStatus.RUNNING, launcher=Launcher.QUEUE)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .order_by("pk")
        .only("pk", "attempt", "worker")
    )
    for job in jobs:
        logger.warning("job %s: requeued, its runner stopped (%s)", job.pk, job.worker)
        TrainingJob.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED, heartbeat_at=None, worker=""
        )
        job_tasks.run_job.delay_on_commit(job.pk, job.attempt)
    return [job.pk for job in jobs]
