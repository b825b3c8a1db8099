"""Running a job: the local copies of its datasets, its spec, and the recipe subprocess on the
``train`` queue, watched until it settles."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.model_store import model_folder_local
from generation.pipelines import ModelLoadError
from stickerloop.errors import ServiceConflict
from stickerloop.lifecycle import heartbeat, lock_unfinished, mark_finished, mark_running
from training_bridge.exports.local_copy import dataset_version_local_copy
from training_bridge.jobs.lifecycle import (
    job_dir,
    job_is_stale,
    output_dir,
    training_job_announce_end,
)
from training_bridge.jobs.models import (
    TERMINAL_JOB_STATUSES,
    JobStatus,
    Launcher,
    TrainingJob,
    TrainingJobDataset,
)
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import LOG_TAIL_CHARS, training_job_progress_report
from training_bridge.jobs.runner import Batch, Outcome, describe_exit, run_watched
from training_bridge.recipes.launch import render_launch_command
from training_bridge.recipes.spec import (
    CHECKPOINT_PREFIX,
    RECIPE_ROLES,
    STATE_FILE,
    DatasetSpec,
    SpecError,
    TrainingSpec,
    read_dataset_facts,
)

logger = logging.getLogger(__name__)

# The recipe prints at most a few lines per step; a heartbeat every flush keeps the stale check
# honest without a write per line.
FLUSH_SECONDS = 0.5


def _resolve_exports(job: TrainingJob) -> dict[str, str]:
    """The local export folder of each dataset, exported now where needed (may take long).

    Raises:
        ServiceConflict: an export failed or the version can no longer be exported.
        ValidationError: the export's checksum is not the one the job was created with.
    """
    exports = {}
    for link in job.dataset_links.select_related("dataset_version"):
        path = dataset_version_local_copy(version=link.dataset_version)
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
        base_model=model_folder_local(job.base_model_version.uri),
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


def _exports_or_fail(job: TrainingJob, attempt: int) -> dict[str, str] | None:
    """``_resolve_exports(job)``, or None once a failed export has failed this attempt with the
    reason."""
    try:
        return _resolve_exports(job)
    except (ServiceConflict, ValidationError, SpecError, OSError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _fail(job.pk, attempt, error=f"Dataset export failed: {message}")
        return None


def training_job_prepare_external(*, job_id: int, attempt: int) -> None:
    """Make an external job ready for its cluster: the local copies of its datasets, its spec
    and its launch command. Runs in a task (``training_jobs.prepare_external``), after the
    request that created or resumed the job has committed.

    Does nothing for a job that is no longer this queued attempt. A failed export fails the job
    with the reason, as it does for a queue job.
    """
    job = (
        TrainingJob.objects.select_related("base_model_version")
        .filter(pk=job_id, attempt=attempt, launcher=Launcher.EXTERNAL, status=JobStatus.QUEUED)
        .first()
    )
    if job is None:
        return
    exports = _exports_or_fail(job, attempt)
    if exports is None:
        return
    try:
        spec = _write_spec(job, exports, device=None)
    except ModelLoadError as exc:
        _fail(job_id, attempt, error=f"The base model is unavailable: {exc}")
        return
    options = job.spec.get("launch_options") or {"tool": "accelerate", "num_processes": 1}
    launch_command = render_launch_command(
        str(job_dir(job) / "spec.json"),
        tool=options["tool"],
        num_processes=options["num_processes"],
        mixed_precision=job.params.get("mixed_precision", "no"),
    )
    TrainingJob.objects.filter(pk=job_id, attempt=attempt).update(
        launch_command=launch_command, spec={**spec.to_json(), "launch_options": options}
    )


@transaction.atomic
def _claim(job_id: int, attempt: int) -> TrainingJob | None:
    """Mark the job RUNNING for this process; None when this message has nothing to do.

    Nothing to do: an older attempt's message, a finished or cancelled job, or a running one
    whose runner is alive (a duplicate: the broker redelivered a message still being worked on,
    or the sweep requeued the job and another message took it first). A running job with a
    stale heartbeat is taken over: its worker died, and the recipe resumes from the last
    checkpoint. Dropping a message while the heartbeat is fresh loses nothing: should that
    runner die, ``training_jobs_requeue`` requeues the job once its heartbeat is stale.
    """
    # Not lock_unfinished: a missing row, another attempt or launcher, or a live RUNNING job
    # also mean nothing to do, and only a stale RUNNING one is taken over.
    job = (
        TrainingJob.objects.select_for_update()
        .select_related("base_model_version")
        .filter(pk=job_id)
        .first()
    )
    if job is None or job.attempt != attempt or job.launcher != Launcher.QUEUE:
        return None
    if job.status == JobStatus.RUNNING and job_is_stale(job):
        logger.warning("job %s: taking over from a runner that stopped (%s)", job.pk, job.worker)
    elif job.status != JobStatus.QUEUED:
        return None
    now = timezone.now()
    mark_running(
        job,
        now=now,
        keep_started_at=True,
        fields={"heartbeat_at": now, "worker": f"{socket.gethostname()}:{os.getpid()}"},
    )
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
    # An export can take minutes; the beat keeps the sweep from taking the job as orphaned.
    with heartbeat(TrainingJob.objects.filter(pk=job_id, attempt=attempt)):
        exports = _exports_or_fail(job, attempt)
    if exports is None:
        return
    try:
        spec = _write_spec(job, exports, device=settings.TRAINING_DEVICE)
    except ModelLoadError as exc:
        _fail(job_id, attempt, error=f"The base model is unavailable: {exc}")
        return
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
    job = lock_unfinished(TrainingJob.objects, job_id, finished=TERMINAL_JOB_STATUSES)
    if job is None or job.attempt != attempt:
        return
    fields = {"heartbeat_at": None}
    if tail is not None:
        fields["log_tail"] = tail[-LOG_TAIL_CHARS:]
    mark_finished(job, status=JobStatus.FAILED, error=error, fields=fields)
    training_job_announce_end(job)
