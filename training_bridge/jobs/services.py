"""Training job writes: creating jobs from published dataset versions, launching them (the
``train`` queue or an external cluster), watching the recipe subprocess, cancel and resume,
registering the output as a model version, and evaluating it against its parent."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from generation.models import (
    BatchKind,
    BatchStatus,
    Candidate,
    CandidateKind,
    ModelKind,
    ModelRole,
    ModelVersion,
    PromptSet,
)
from stickerloop.api import ServiceConflict
from stickerloop.roles import Role
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.models import (
    EvaluationStatus,
    JobStatus,
    Launcher,
    Recipe,
    TrainingJob,
    TrainingJobDataset,
    TrainingJobEvaluation,
    TrainingJobLoss,
)
from training_bridge.jobs.runner import Batch, Outcome, describe_exit, run_watched
from training_bridge.models import DatasetVersion, VersionStatus
from training_bridge.recipes.launch import LAUNCH_TOOLS, render_launch_command
from training_bridge.recipes.progress import EVENTS
from training_bridge.recipes.spec import (
    CHECKPOINT_PREFIX,
    RECIPE_MODEL_KINDS,
    RECIPE_ROLES,
    STATE_FILE,
    SUMMARY_FILE,
    DatasetSpec,
    ModelFacts,
    SpecError,
    TrainingSpec,
    check_dataset_fits,
    check_roles,
    read_model_facts,
    resolve_params,
)

logger = logging.getLogger(__name__)

MAX_EVALUATION_SEEDS = 8
MAX_EVALUATION_SOURCES = 64
DEFAULT_EVALUATION_SEEDS = [0, 1]
DEFAULT_EVALUATION_SOURCES = 8
EVALUATION_OVERLAP = 3
LOG_TAIL_CHARS = 16_000
MAX_REPORT_EVENTS = 10_000
# The recipe prints at most a few lines per step; a heartbeat every flush keeps the stale check
# honest without a write per line.
FLUSH_SECONDS = 0.5


# Paths -------------------------------------------------------------------------------------------


def job_dir(job: TrainingJob) -> Path:
    return Path(settings.TRAINING_DIR) / f"job-{job.pk}"


def output_dir(job: TrainingJob) -> Path:
    """Where the recipe writes checkpoints and the final model (the new version's URI)."""
    return job_dir(job) / "model"


def _is_stale(job: TrainingJob) -> bool:
    """Whether a RUNNING job's runner stopped showing signs of life (its worker died)."""
    if job.heartbeat_at is None:
        return True
    return timezone.now() - job.heartbeat_at > timedelta(seconds=settings.TRAINING_STALE_SECONDS)


# Checks ------------------------------------------------------------------------------------------


def _field(spec_field: str) -> str:
    return {"base_model": "base_model_version"}.get(spec_field, spec_field)


def model_facts(version: ModelVersion) -> ModelFacts:
    """The base model's kind and noise schedule, read from its folder's JSON files.

    Raises:
        ValidationError: (``base_model_version``) the folder is missing or not a trainable model.
    """
    try:
        facts = read_model_facts(version.uri)
    except SpecError as exc:
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


# Create, launch, cancel, resume ------------------------------------------------------------------


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


@transaction.atomic
def training_job_create_from_trigger(
    *,
    dataset_version: DatasetVersion,
    trigger: dict,
    requested_by: AbstractBaseUser | None = None,
) -> TrainingJob:
    """The job a dataset publish asks for (the rule's ``training_trigger``).

    ``trigger``: ``{"recipe", "base_model_version_id", "params", "role"}``; ``role`` is the
    published version's role (default: the recipe's only role). Recipes with two roles name the
    other dataset version in ``"datasets": {"<role>": <dataset version id>}``. Optional:
    ``"evaluate"`` (default true), ``"name"``.

    Raises:
        ValidationError: a malformed trigger, or a job that does not fit its recipe.
    """
    if not isinstance(trigger, dict):
        raise ValidationError({"trigger": ["The training trigger must be an object."]})
    recipe = trigger.get("recipe")
    if recipe not in Recipe.values:
        raise ValidationError(
            {
                "trigger.recipe": [
                    f"Unknown recipe {recipe!r}; use one of {', '.join(Recipe.values)}."
                ]
            }
        )
    roles = RECIPE_ROLES[recipe]
    role = trigger.get("role") or (roles[0] if len(roles) == 1 else None)
    if role not in roles:
        raise ValidationError(
            {
                "trigger.role": [
                    f"The {recipe} recipe takes the roles {', '.join(roles)}, not {role!r}."
                ]
            }
        )
    base_id = trigger.get("base_model_version_id")
    base = ModelVersion.objects.filter(pk=base_id).first() if isinstance(base_id, int) else None
    if base is None:
        raise ValidationError(
            {"trigger.base_model_version_id": [f"No model version with id {base_id!r}."]}
        )
    datasets = {role: dataset_version}
    others = trigger.get("datasets") or {}
    if not isinstance(others, dict):
        raise ValidationError({"trigger.datasets": ["Must map roles to dataset version ids."]})
    for other_role, version_id in others.items():
        version = DatasetVersion.objects.filter(pk=version_id).first()
        if version is None:
            raise ValidationError(
                {
                    "trigger.datasets": [
                        f"No dataset version with id {version_id!r} for role {other_role!r}."
                    ]
                }
            )
        datasets[other_role] = version
    params = trigger.get("params") or {}
    return training_job_create(
        recipe=recipe,
        base_model_version=base,
        datasets=datasets,
        params=params,
        name=str(trigger.get("name") or f"{recipe} on {dataset_version}"),
        evaluate=bool(trigger.get("evaluate", True)),
        requested_by=requested_by,
        trigger={"source": "dataset_publish", "dataset_version_id": dataset_version.pk},
    )


def _launch(job: TrainingJob) -> None:
    """Dispatch a QUEUED job. Assumes the caller holds the job row (or just created it)."""
    if job.launcher == Launcher.QUEUE:
        job_tasks.run_job.delay_on_commit(job.pk, job.attempt)
        return
    exports = _resolve_exports(job)
    spec = _write_spec(job, exports, device=None)
    options = job.spec.get("launch_options") or {"tool": "accelerate", "num_processes": 1}
    job.launch_command = render_launch_command(
        str(job_dir(job) / "spec.json"),
        tool=options["tool"],
        num_processes=options["num_processes"],
        mixed_precision=job.params.get("mixed_precision", "no"),
    )
    job.spec = {**spec.to_json(), "launch_options": options}
    job.save(update_fields=["launch_command", "spec"])


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
    if job.status == JobStatus.RUNNING and job.launcher == Launcher.QUEUE and not _is_stale(job):
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


# Running on the train queue ---------------------------------------------------------------------


def _resolve_exports(job: TrainingJob) -> dict[str, str]:
    """The local export folder of each dataset, exported now where needed (may take long).

    Raises:
        ServiceConflict: an export failed or the version can no longer be exported.
        ValidationError: the export's checksum is not the one the job was created with.
    """
    from training_bridge.recipes.spec import read_dataset_facts
    from training_bridge.selectors import dataset_version_local_export

    exports = {}
    for link in job.dataset_links.select_related("dataset_version"):
        path = dataset_version_local_export(version=link.dataset_version)
        facts = read_dataset_facts(path)
        if facts.manifest_sha256 != link.manifest_sha256:
            raise ValidationError(
                {
                    f"datasets.{link.role}": [
                        f"The export at {path} has manifest {facts.manifest_sha256}, not "
                        f"{link.manifest_sha256}."
                    ]
                }
            )
        exports[link.role] = str(path)
        TrainingJobDataset.objects.filter(pk=link.pk).update(export_path=str(path))
        # An export can take minutes; the heartbeat keeps the job from looking orphaned.
        TrainingJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )
    return exports


def build_spec(job: TrainingJob, exports: dict[str, str], *, device: str | None) -> TrainingSpec:
    return TrainingSpec(
        recipe=job.recipe,
        base_model=job.base_model_version.uri,
        datasets=[DatasetSpec(role=role, path=exports[role]) for role in RECIPE_ROLES[job.recipe]],
        output_dir=str(output_dir(job)),
        params=dict(job.params),
        device=device,
        job={"id": job.pk, "name": str(job), "base_model_version": job.base_model_version.name},
    )


def _write_spec(job: TrainingJob, exports: dict[str, str], *, device: str | None) -> TrainingSpec:
    spec = build_spec(job, exports, device=device)
    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.json"
    staging = folder / "spec.json.tmp"
    staging.write_text(json.dumps(spec.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(staging, path)
    return spec


@transaction.atomic
def _claim(job_id: int, attempt: int) -> TrainingJob | None:
    """Mark the job RUNNING for this process; None when this message has nothing to do.

    Nothing to do: an older attempt's message, a finished or cancelled job, or a running one
    whose runner is alive (the broker redelivered a message still being worked on). A running
    job with a stale heartbeat is taken over: its worker died, and the recipe resumes from
    the last checkpoint.
    """
    job = (
        TrainingJob.objects.select_for_update()
        .select_related("base_model_version")
        .filter(pk=job_id)
        .first()
    )
    if job is None or job.attempt != attempt or job.launcher != Launcher.QUEUE:
        return None
    if job.status == JobStatus.RUNNING and _is_stale(job):
        logger.warning("job %s: taking over from a runner that stopped (%s)", job.pk, job.worker)
    elif job.status != JobStatus.QUEUED:
        return None
    now = timezone.now()
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or now
    job.heartbeat_at = now
    job.worker = f"{socket.gethostname()}:{os.getpid()}"
    job.save(update_fields=["status", "started_at", "heartbeat_at", "worker"])
    return job


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
            "TRANSFORMERS_OFFLINE": env.get("TRANSFORMERS_OFFLINE", "1"),
            "HF_DATASETS_OFFLINE": env.get("HF_DATASETS_OFFLINE", "1"),
        }
    )
    # The recipe never imports Django; dropping the settings module makes sure it cannot.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def recipe_command(spec_path: Path, resume_from: str = "latest") -> list[str]:
    """The child process of a queue job: the recipe's own entry point, resuming if it can."""
    return [
        sys.executable,
        "-m",
        "training_bridge.recipes.train",
        "--spec",
        str(spec_path),
        "--resume-from-checkpoint",
        resume_from,
    ]


def resume_point(job: TrainingJob, run_dir: Path) -> str:
    """Where a queue job's next attempt starts: the checkpoint the job last recorded.

    A worker killed between the recipe's lines and the runner's next flush leaves a newer
    checkpoint on disk whose steps the job never recorded; resuming from it would leave those
    steps' losses out for good. Starting from the recorded one runs them again (their rows are
    written once). ``latest`` when that checkpoint is gone (rotated away) or none was recorded.
    """
    step = job.last_checkpoint_step
    if step is not None:
        folder = run_dir / f"{CHECKPOINT_PREFIX}{step}"
        if (folder / STATE_FILE).is_file():
            return str(folder)
    return "latest"


def training_job_run(*, job_id: int, attempt: int) -> None:
    """Run one attempt of a queue job: export its datasets, run the recipe in a subprocess,
    follow its progress into the job row, and settle the job when the process ends.

    Never raises for a failed run: a crash, an OOM kill or bad arguments end as FAILED with
    the reason and the log tail; the worker carries on with its next task.
    """
    job = _claim(job_id, attempt)
    if job is None:
        return
    try:
        exports = _resolve_exports(job)
    except (ServiceConflict, ValidationError, SpecError, OSError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _fail(job_id, attempt, error=f"Dataset export failed: {message}")
        return
    spec = _write_spec(job, exports, device=settings.TRAINING_DEVICE)
    TrainingJob.objects.filter(pk=job_id).update(spec=spec.to_json())
    folder = job_dir(job)
    with (folder / "train.log").open("a", encoding="utf-8") as log:
        log.write(
            f"--- attempt {attempt} on {socket.gethostname()} "
            f"at {timezone.now():%Y-%m-%d %H:%M:%S}\n"
        )

    def on_output(batch: Batch) -> bool:
        try:
            return training_job_progress_report(
                job=job, events=batch.events, log_lines=batch.lines, attempt=attempt
            )
        except ServiceConflict:
            return False

    def on_start(pid: int) -> None:
        TrainingJob.objects.filter(pk=job_id, attempt=attempt).update(
            worker=f"{socket.gethostname()}:{pid}"
        )

    try:
        outcome = run_watched(
            recipe_command(folder / "spec.json", resume_point(job, Path(spec.output_dir))),
            cwd=settings.BASE_DIR,
            env=_child_env(),
            log_path=folder / "train.log",
            on_output=on_output,
            on_start=on_start,
            flush_seconds=FLUSH_SECONDS,
        )
    except OSError as exc:
        _fail(job_id, attempt, error=f"The training process could not start: {exc}")
        return
    except SoftTimeLimitExceeded:
        # run_watched stopped the recipe on the way out; its checkpoints stay for a resume.
        _fail(
            job_id,
            attempt,
            error="The run exceeded the train queue's time limit; resume it to continue from "
            "its last checkpoint.",
        )
        return
    _settle(job_id, attempt, outcome)


def _settle(job_id: int, attempt: int, outcome: Outcome) -> None:
    if outcome.stopped:
        TrainingJob.objects.filter(pk=job_id, attempt=attempt).update(
            log_tail=outcome.tail[-LOG_TAIL_CHARS:], heartbeat_at=None
        )
        return
    done, error = outcome.done_event, outcome.error_event
    if outcome.returncode == 0 and done is not None:
        try:
            job = TrainingJob.objects.get(pk=job_id)
            if job.attempt == attempt and job.status == JobStatus.RUNNING:
                training_job_register_output(job=job)
        except (ValidationError, ServiceConflict) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            _fail(
                job_id,
                attempt,
                error=f"Registering the output failed: {message}",
                tail=outcome.tail,
            )
        return
    if error is not None:
        message = error.get("message") or "The recipe reported an error."
    elif outcome.returncode == 0:
        message = "The training process exited without finishing."
    else:
        message = f"The training process {describe_exit(outcome.returncode)}."
    _fail(job_id, attempt, error=message, tail=outcome.tail)


@transaction.atomic
def _fail(job_id: int, attempt: int, *, error: str, tail: str | None = None) -> None:
    job = TrainingJob.objects.select_for_update().get(pk=job_id)
    if job.attempt != attempt or job.is_finished:
        return
    job.status = JobStatus.FAILED
    job.error = error
    job.finished_at = timezone.now()
    job.heartbeat_at = None
    fields = ["status", "error", "finished_at", "heartbeat_at"]
    if tail is not None:
        job.log_tail = tail[-LOG_TAIL_CHARS:]
        fields.append("log_tail")
    job.save(update_fields=fields)


# Progress ----------------------------------------------------------------------------------------


def _check_events(events: Any) -> list[dict]:
    if not isinstance(events, list) or len(events) > MAX_REPORT_EVENTS:
        raise ValidationError({"events": [f"Give a list of at most {MAX_REPORT_EVENTS} events."]})
    for index, event in enumerate(events):
        if not isinstance(event, dict) or event.get("event") not in EVENTS:
            raise ValidationError(
                {
                    f"events.{index}": [
                        f"Each event is an object whose 'event' is one of {', '.join(EVENTS)}."
                    ]
                }
            )
        step = event.get("step")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
            raise ValidationError({f"events.{index}.step": ["Must be a non-negative integer."]})
        loss = event.get("loss")
        if loss is not None and (
            not isinstance(loss, dict)
            or not all(isinstance(v, int | float) or v is None for v in loss.values())
        ):
            raise ValidationError({f"events.{index}.loss": ["Must map roles to numbers."]})
    return events


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@transaction.atomic
def training_job_progress_report(
    *,
    job: TrainingJob,
    events: list[dict],
    log_lines: list[str] | None = None,
    attempt: int | None = None,
) -> bool:
    """Apply progress events (see ``training_bridge.recipes.progress``) to the job row.

    Used by the queue runner at every flush and by the external launcher's API and command.
    Moves a queued job to RUNNING, records steps, per-role losses (one row per step and role;
    a resumed run's repeated steps overwrite), checkpoints, seconds per step and the ETA, keeps
    the log tail, and fails the job on an ``error`` event. Returns False when the run should
    stop: the job was cancelled, or ``attempt`` is no longer the job's attempt.

    Raises:
        ServiceConflict: the job has ended.
        ValidationError: malformed events, or a step beyond the job's total.
    """
    events = _check_events(events)
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if attempt is not None and job.attempt != attempt:
        return False
    if job.status == JobStatus.CANCELLED:
        return False
    if job.is_finished:
        raise ServiceConflict(f"Job {job.pk} has already ended ({job.status}).")
    for index, event in enumerate(events):
        step = event.get("step")
        if step is not None and step > job.total_steps:
            raise ValidationError(
                {
                    f"events.{index}.step": [
                        f"Step {step} is beyond the job's {job.total_steps} steps."
                    ]
                }
            )
    now = timezone.now()
    fields = {"heartbeat_at"}
    job.heartbeat_at = now
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.RUNNING
        job.started_at = job.started_at or now
        fields |= {"status", "started_at"}
    losses: dict[tuple[int, str], TrainingJobLoss] = {}
    for event in events:
        kind = event["event"]
        if kind == "start":
            job.step = event.get("step") or 0
            job.resumed_from_step = event.get("resumed_from")
            job.load_seconds = _number(event.get("load_s"))
            fields |= {"step", "resumed_from_step", "load_seconds"}
        elif kind == "progress":
            job.step = event["step"]
            job.last_loss = dict(event.get("loss") or {})
            job.seconds_per_step = _number(event.get("seconds_per_step"))
            job.eta_seconds = _number(event.get("eta_s"))
            fields |= {"step", "last_loss", "seconds_per_step", "eta_seconds"}
            for role, loss in job.last_loss.items():
                losses[(job.step, role)] = TrainingJobLoss(
                    job=job,
                    step=job.step,
                    role=str(role)[:24],
                    loss=_number(loss),
                    seconds_per_step=job.seconds_per_step,
                )
        elif kind == "checkpoint":
            job.last_checkpoint_step = event.get("step")
            fields.add("last_checkpoint_step")
        elif kind == "done":
            job.step = event.get("step") or job.step
            job.metrics = event.get("metrics") or {}
            job.eta_seconds = 0.0
            fields |= {"step", "metrics", "eta_seconds"}
        elif kind == "error":
            job.status = JobStatus.FAILED
            job.error = str(event.get("message") or "The recipe reported an error.")
            job.finished_at = now
            fields |= {"status", "error", "finished_at"}
    if log_lines:
        job.log_tail = (job.log_tail + "".join(f"{line}\n" for line in log_lines))[-LOG_TAIL_CHARS:]
        fields.add("log_tail")
    job.save(update_fields=sorted(fields))
    if losses:
        TrainingJobLoss.objects.bulk_create(
            list(losses.values()),
            update_conflicts=True,
            unique_fields=["job", "step", "role"],
            update_fields=["loss", "seconds_per_step"],
        )
    return job.status == JobStatus.RUNNING


# Output ------------------------------------------------------------------------------------------


def _read_summary(folder: Path) -> dict:
    path = folder / SUMMARY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValidationError(
            {"output_dir": [f"{folder} has no {SUMMARY_FILE}: the run did not finish there."]}
        ) from exc
    except (OSError, ValueError) as exc:
        raise ValidationError({"output_dir": [f"{path} is unreadable ({exc})."]}) from exc


def _check_summary(job: TrainingJob, folder: Path, summary: dict) -> None:
    """The output must be this job's run: its recipe, its datasets' checksums, all its steps."""
    problems = []
    if summary.get("recipe") != job.recipe:
        problems.append(f"it was trained with the {summary.get('recipe')} recipe, not {job.recipe}")
    trained = sorted((d.get("role"), d.get("manifest_sha256")) for d in summary.get("datasets", []))
    wanted = sorted(job.dataset_links.values_list("role", "manifest_sha256"))
    if trained != wanted:
        problems.append("it was trained on other datasets (the roles or manifest checksums differ)")
    steps = (summary.get("metrics") or {}).get("steps")
    if steps != job.total_steps:
        problems.append(f"it stopped at step {steps} of {job.total_steps}")
    if problems:
        raise ValidationError(
            {"output_dir": [f"The output at {folder} is not this job's: {'; '.join(problems)}."]}
        )


def _version_name(job: TrainingJob) -> str:
    suffix = f"-{job.recipe.replace('_', '-')}-job{job.pk}"
    return slugify(job.base_model_version.name)[: 100 - len(suffix)] + suffix


@transaction.atomic
def training_job_register_output(
    *,
    job: TrainingJob,
    output_uri: str | None = None,
    registered_by: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Register the job's finished output as a new model version and mark the job SUCCEEDED.

    The version's parent is the base model; its provenance names the job, recipe, datasets
    (with checksums) and parameters. Idempotent: a job that has its version returns it, so a
    retried or resumed run never registers twice. Starts the evaluation when the job asks.

    Raises:
        ServiceConflict: the job was cancelled or failed (resume it first).
        ValidationError: (``output_dir``) no finished output there, or not this job's run.
    """
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("base_model_version", "output_model_version")
        .get(pk=job.pk)
    )
    if job.output_model_version_id is not None:
        return job.output_model_version
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        raise ServiceConflict(f"Job {job.pk} is {job.status}; resume it before registering.")
    folder = Path(output_uri) if output_uri else output_dir(job)
    summary = _read_summary(folder)
    _check_summary(job, folder, summary)
    from generation.services import model_version_register

    base = job.base_model_version
    links = list(job.dataset_links.select_related("dataset_version"))
    metrics = summary.get("metrics") or {}
    version = model_version_register(
        name=_version_name(job),
        kind=base.kind,
        uri=str(folder),
        role=ModelRole.STUDENT if job.recipe == Recipe.DISTILL_STUDENT else ModelRole.FINETUNED,
        default_params={**base.default_params, **(summary.get("default_params") or {})},
        parent=base,
        description=f"Trained by training job {job.pk} ({job.get_recipe_display()}) from "
        f"{base.name}.",
        provenance={
            "training_job": job.pk,
            "recipe": job.recipe,
            "base_model_version": base.pk,
            "datasets": [
                {
                    "dataset_version_id": link.dataset_version_id,
                    "role": link.role,
                    "purpose": link.dataset_version.purpose,
                    "manifest_sha256": link.manifest_sha256,
                }
                for link in links
            ],
            "params": job.params,
            "steps": metrics.get("steps"),
            "final_loss": metrics.get("final_loss"),
        },
        created_by=registered_by or job.requested_by,
    )
    now = timezone.now()
    job.status = JobStatus.SUCCEEDED
    job.output_model_version = version
    job.step = job.total_steps
    job.metrics = metrics
    job.eta_seconds = 0.0
    job.finished_at = now
    job.heartbeat_at = None
    job.save(
        update_fields=[
            "status",
            "output_model_version",
            "step",
            "metrics",
            "eta_seconds",
            "finished_at",
            "heartbeat_at",
        ]
    )
    if job.evaluate:
        _evaluation_start(job, version)
    return version


# Evaluation --------------------------------------------------------------------------------------


def _default_sources(limit: int) -> list[Candidate]:
    """Stickers made from held-out prompts, newest prompt sets first."""
    return list(
        Candidate.objects.filter(
            kind=CandidateKind.STICKER, prompt__prompt_set__is_held_out=True
        ).order_by("-prompt__prompt_set__created_at", "prompt__position", "id")[:limit]
    )


def _evaluation_start(job: TrainingJob, version: ModelVersion) -> TrainingJobEvaluation:
    """Ask for candidates from the new model and its parent (same prompts or sources, same
    seeds). A batch the generation service refuses marks the evaluation FAILED with its reason;
    it never undoes the registration (it runs in a savepoint)."""
    from generation.services import generation_batch_create

    evaluation = TrainingJobEvaluation(job=job)
    parent = job.base_model_version
    name = f"Evaluation of job {job.pk}: {version.name} vs {parent.name}"
    seeds = job.evaluation_seeds or DEFAULT_EVALUATION_SEEDS
    try:
        with transaction.atomic():
            if version.kind == ModelKind.IMAGE:
                prompt_set = job.evaluation_prompt_set or (
                    PromptSet.objects.filter(is_held_out=True)
                    .order_by("-created_at", "-id")
                    .first()
                )
                if prompt_set is None:
                    evaluation.status = EvaluationStatus.SKIPPED
                    evaluation.error = "No held-out prompt set to evaluate on."
                else:
                    evaluation.batch = generation_batch_create(
                        kind=BatchKind.STICKER,
                        prompt_set=prompt_set,
                        model_versions=[version, parent],
                        seeds=seeds,
                        params={},
                        name=name,
                        requested_by=job.requested_by,
                    )
            else:
                sources = list(job.evaluation_sources.all()) or _default_sources(
                    DEFAULT_EVALUATION_SOURCES
                )
                if not sources:
                    evaluation.status = EvaluationStatus.SKIPPED
                    evaluation.error = "No source stickers of held-out prompts to animate."
                else:
                    evaluation.batch = generation_batch_create(
                        kind=BatchKind.ANIMATION,
                        sources=sources,
                        model_versions=[version, parent],
                        seeds=seeds,
                        params={},
                        name=name,
                        requested_by=job.requested_by,
                    )
    except ValidationError as exc:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    evaluation.save()
    if evaluation.status == EvaluationStatus.GENERATING:
        transaction.on_commit(
            lambda: job_tasks.evaluation_advance.apply_async(
                (evaluation.pk,), countdown=job_tasks.EVALUATION_POLL_SECONDS
            )
        )
    return evaluation


def _pairs(
    evaluation: TrainingJobEvaluation, version_id: int, parent_id: int
) -> list[list[Candidate]]:
    """[new, parent] candidates made from the same prompt (or source sticker) and seed."""
    batch = evaluation.batch
    key_field = "prompt_id" if batch.kind == BatchKind.STICKER else "source_id"
    by_key: dict[tuple[int, int], dict[int, Candidate]] = {}
    for candidate in Candidate.objects.filter(batch=batch).order_by("id"):
        key = (getattr(candidate, key_field), candidate.seed)
        by_key.setdefault(key, {})[candidate.model_version_id] = candidate
    return [
        [found[version_id], found[parent_id]]
        for _, found in sorted(by_key.items())
        if version_id in found and parent_id in found
    ]


def _active_raters() -> list[AbstractBaseUser]:
    return list(
        get_user_model().objects.filter(is_active=True, groups__name=Role.RATER).order_by("pk")
    )


@transaction.atomic
def training_job_evaluation_advance(*, evaluation_id: int) -> bool:
    """Open the pair campaign once the evaluation batch has finished; True when nothing is
    left to wait for (open, failed, skipped), False while the batch is still generating.

    The campaign pairs each new-model candidate with the parent's candidate of the same prompt
    (or source sticker) and seed, asks the pairwise questions (alignment, style, motion,
    overall) and is open to every active rater.
    """
    from annotation.services.campaigns import campaign_create, campaign_start
    from annotation.services.items import campaign_items_add

    evaluation = (
        TrainingJobEvaluation.objects.select_for_update(of=("self",))
        .select_related("job__output_model_version", "job__base_model_version", "batch")
        .filter(pk=evaluation_id)
        .first()
    )
    if evaluation is None or evaluation.status != EvaluationStatus.GENERATING:
        return True
    batch = evaluation.batch
    if batch is None:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = "The evaluation batch was deleted."
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    if not batch.is_finished:
        return False
    job = evaluation.job
    version, parent = job.output_model_version, job.base_model_version
    groups = (
        _pairs(evaluation, version.pk, parent.pk) if batch.status != BatchStatus.CANCELLED else []
    )
    if not groups:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = (
            f"Evaluation batch {batch.pk} ended {batch.status} with no pair of "
            f"candidates to compare. {batch.error}".strip()
        )
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    guidelines = (
        f"Compare **{version.name}** (trained by job {job.pk}, {job.get_recipe_display()}) with "
        f"its parent **{parent.name}**: same prompt or source sticker, same seed. Which side is "
        f"better for each question? Ties are fine."
    )
    try:
        with transaction.atomic():
            campaign = campaign_create(
                name=f"Evaluation: {version.name} vs {parent.name}"[:200],
                kind="pair",
                preset="pairwise",
                guidelines=guidelines,
                overlap=EVALUATION_OVERLAP,
                raters=_active_raters(),
                created_by=job.requested_by,
            )
            campaign_items_add(campaign=campaign, candidate_groups=groups, seed=job.pk)
            campaign_start(campaign=campaign)
    except (ValidationError, ServiceConflict) as exc:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = f"The pair campaign could not open: {exc}"
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    evaluation.status = EvaluationStatus.OPEN
    evaluation.campaign = campaign
    evaluation.pairs = len(groups)
    evaluation.save(update_fields=["status", "campaign", "pairs", "updated_at"])
    return True
