"""Registering a finished job's output as a model version."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from generation.model_store import (
    BUCKET_SCHEME,
    MODELS_PREFIX,
    bucket_configured,
    model_folder_local,
    model_folder_publish,
    model_uri_problem,
)
from generation.models import (
    ModelRole,
    ModelVersion,
)
from generation.pipelines import ModelLoadError
from stickerloop.errors import ServiceConflict
from stickerloop.lifecycle import heartbeat
from stickerloop.storage import incomplete_set_abandoned, incomplete_set_remove, incomplete_sets
from training_bridge.jobs.evaluation import training_job_evaluation_start
from training_bridge.jobs.lifecycle import output_dir, training_job_announce_end
from training_bridge.jobs.models import (
    JobStatus,
    Recipe,
    TrainingJob,
)
from training_bridge.recipes.spec import (
    CHECKPOINT_PREFIX,
    SUMMARY_FILE,
)

# Where a job's model goes in the bucket: models/training-job-<id>/ (model_folder_publish).
_OUTPUT_NAME = "training-job-{}"
_OUTPUT_SET = re.compile(rf"{re.escape(MODELS_PREFIX)}training-job-(\d+)/")


def _read_summary(folder: Path, shown: str) -> dict:
    """The run's summary in ``folder``; messages name the output as ``shown`` (its URI)."""
    path = folder / SUMMARY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValidationError(
            {"output_dir": [f"{shown} has no {SUMMARY_FILE}: the run did not finish there."]}
        ) from exc
    except (OSError, ValueError) as exc:
        raise ValidationError(
            {"output_dir": [f"{shown}/{SUMMARY_FILE} is unreadable ({exc})."]}
        ) from exc


def _check_summary(job: TrainingJob, shown: str, summary: dict) -> None:
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
            {"output_dir": [f"The output at {shown} is not this job's: {'; '.join(problems)}."]}
        )


def _version_name(job: TrainingJob) -> str:
    suffix = f"-{job.recipe.replace('_', '-')}-job{job.pk}"
    return slugify(job.base_model_version.name)[: 100 - len(suffix)] + suffix


def _is_checkpoint(name: str) -> bool:
    return name.startswith(CHECKPOINT_PREFIX)


def training_job_register_output(
    *,
    job: TrainingJob,
    output_uri: str | None = None,
    registered_by: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Register the job's finished output as a new model version and mark the job SUCCEEDED.

    With a bucket, the model folder (without its checkpoints) is first copied into it as
    ``models/training-job-<id>/``, the complete marker last, and the version's URI names it:
    the gpu workers on other machines read it from there. The copy runs before the job row is
    locked (a real model takes minutes), under the job's heartbeat; it goes to the same keys
    every time, so a run killed halfway and resumed writes one model.

    The version's parent is the base model; its provenance names the job, recipe, datasets
    (with checksums) and parameters. Idempotent: a job that has its version returns it, so a
    retried or resumed run never registers twice. Starts the evaluation when the job asks.

    Raises:
        ServiceConflict: the job was cancelled or failed (resume it first).
        ValidationError: (``output_dir``) no finished output there, or not this job's run.
    """
    current = TrainingJob.objects.select_related("output_model_version").get(pk=job.pk)
    if current.output_model_version_id is not None:
        return current.output_model_version
    # Checked again under the lock; here so that no model is uploaded for a job that ended.
    if current.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        raise ServiceConflict(f"Job {job.pk} is {current.status}; resume it before registering.")
    if output_uri and output_uri.startswith(BUCKET_SCHEME):
        # A run elsewhere that wrote its model to the bucket itself: its summary is read from
        # there (the configuration files only), and the model stays where it is.
        problem = model_uri_problem(output_uri, None)
        if problem is not None:
            raise ValidationError({"output_dir": [problem]})
        try:
            folder = Path(model_folder_local(output_uri, weights=False))
        except ModelLoadError as exc:
            raise ValidationError({"output_dir": [str(exc)]}) from exc
        uri = shown = output_uri
        _check_summary(current, shown, _read_summary(folder, shown))
    else:
        folder = Path(output_uri) if output_uri else output_dir(job)
        uri = shown = str(folder)
        _check_summary(current, shown, _read_summary(folder, shown))
        if bucket_configured():
            with heartbeat(TrainingJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING)):
                uri = model_folder_publish(
                    folder, name=_OUTPUT_NAME.format(job.pk), skip=_is_checkpoint
                )
    return _register_output(
        job=job, folder=folder, shown=shown, uri=uri, registered_by=registered_by
    )


@transaction.atomic
def _register_output(
    *,
    job: TrainingJob,
    folder: Path,
    shown: str,
    uri: str,
    registered_by: AbstractBaseUser | None,
) -> ModelVersion:
    """``training_job_register_output`` once the model is where ``uri`` says."""
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("base_model_version", "output_model_version")
        .get(pk=job.pk)
    )
    if job.output_model_version_id is not None:
        return job.output_model_version
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        raise ServiceConflict(f"Job {job.pk} is {job.status}; resume it before registering.")
    summary = _read_summary(folder, shown)
    _check_summary(job, shown, summary)
    from generation.services.model_versions import model_version_register

    base = job.base_model_version
    links = list(job.dataset_links.select_related("dataset_version"))
    metrics = summary.get("metrics") or {}
    version = model_version_register(
        name=_version_name(job),
        kind=base.kind,
        uri=uri,
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
    training_job_announce_end(job)
    if job.evaluate:
        training_job_evaluation_start(job, version)
    return version


def training_job_outputs_staged_clean(*, now: datetime | None = None) -> list[str]:
    """Remove the model objects in storage (``models/training-job-<id>/``) without a complete
    marker that no run will finish, and return their prefixes.

    A failed or cancelled job's copy, or one whose job row is gone, goes once nothing was
    written there for ``SWEEP_STALE_SECONDS``; a resumed job copies its model again from the
    start. Queued and running jobs keep theirs (the copy runs while the job is running, and the
    next run overwrites it), and a succeeded job's model has its marker; one without it waits
    ``STORAGE_STAGED_MAX_AGE_SECONDS``. Each set is removed holding its job's row, so a resume
    (which locks it too) waits until the removal is done and cannot copy into it meanwhile.
    """
    now = now or timezone.now()
    removed = []
    for objects in incomplete_sets(MODELS_PREFIX, _OUTPUT_SET):
        with transaction.atomic():
            status = (
                TrainingJob.objects.select_for_update()
                .filter(pk=int(objects.owner))
                .values_list("status", flat=True)
                .first()
            )
            if status in (JobStatus.QUEUED, JobStatus.RUNNING):
                continue
            stopped = status != JobStatus.SUCCEEDED
            if incomplete_set_abandoned(objects, owner_stopped=stopped, now=now):
                reason = f"training job {objects.owner} {status}" if status else "no such job"
                incomplete_set_remove(objects, reason=reason)
                removed.append(objects.prefix)
    return removed
