"""Progress a running recipe reports (from the queue runner or an external cluster): steps,
losses, checkpoints, the log tail and the heartbeat."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from stickerloop.errors import ServiceConflict
from training_bridge.jobs.lifecycle import training_job_announce_end
from training_bridge.jobs.models import (
    JobStatus,
    TrainingJob,
    TrainingJobLoss,
)
from training_bridge.recipes.progress import EVENTS

LOG_TAIL_CHARS = 16_000
MAX_REPORT_EVENTS = 10_000


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
    if job.status == JobStatus.FAILED:
        training_job_announce_end(job)
    if losses:
        TrainingJobLoss.objects.bulk_create(
            list(losses.values()),
            update_conflicts=True,
            unique_fields=["job", "step", "role"],
            update_fields=["loss", "seconds_per_step"],
        )
    return job.status == JobStatus.RUNNING
