"""The training sweep against real PostgreSQL: a running job whose runner stopped is requeued
with the same attempt, and of its two messages (the sweep's and a late redelivery) one runs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.execution import _claim
from training_bridge.jobs.lifecycle import training_job_create, training_jobs_requeue
from training_bridge.jobs.models import JobStatus, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The broker is the boundary: record what the sweep sends."""
    messages = []
    monkeypatch.setattr(job_tasks.run_job, "delay", lambda *a: messages.append(a))
    return messages


@pytest.fixture
def make_job(models, datasets, settings):
    settings.TRAINING_STALE_SECONDS = 90

    def make(status, age_seconds, now, *, launcher="queue"):
        job = training_job_create(
            recipe="finetune",
            base_model_version=models["sticker-base"],
            datasets={"train": datasets["alignment"]},
            params={"max_train_steps": 4, "train_batch_size": 2},
            evaluate=False,
            launcher=launcher,
        )
        TrainingJob.objects.filter(pk=job.pk).update(
            status=status,
            heartbeat_at=None if age_seconds is None else now - timedelta(seconds=age_seconds),
            worker="host:1234",
            started_at=now - timedelta(hours=1),
        )
        return job

    return make


def test_the_sweep_requeues_running_queue_jobs_whose_runner_stopped(
    make_job, sent, django_capture_on_commit_callbacks
):
    now = timezone.now()
    dead = make_job(JobStatus.RUNNING, 91, now)
    never_beat = make_job(JobStatus.RUNNING, None, now)
    make_job(JobStatus.RUNNING, 89, now)  # alive
    make_job(JobStatus.RUNNING, 3600, now, launcher="external")
    make_job(JobStatus.QUEUED, None, now)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        requeued = training_jobs_requeue(now=now)
    # then
    assert requeued == [dead.pk, never_beat.pk]
    assert sent == [(dead.pk, 1), (never_beat.pk, 1)]
    rows = TrainingJob.objects.order_by("pk").values_list("status", "attempt", "worker")
    assert list(rows) == [
        ("queued", 1, ""),
        ("queued", 1, ""),
        ("running", 1, "host:1234"),
        ("running", 1, "host:1234"),
        ("queued", 1, "host:1234"),
    ]
    # and the next sweep sends nothing more
    with django_capture_on_commit_callbacks(execute=True):
        assert training_jobs_requeue(now=now) == []
    assert len(sent) == 2


def test_of_the_sweep_message_and_a_late_redelivery_one_runs_the_job(make_job):
    now = timezone.now()
    job = make_job(JobStatus.RUNNING, 600, now)
    training_jobs_requeue(now=now)
    # when: both messages of attempt 1 arrive
    first = _claim(job.pk, 1)
    second = _claim(job.pk, 1)
    # then: the second finds the job running with a fresh heartbeat and drops
    assert first is not None and second is None
    job.refresh_from_db()
    assert (job.status, job.attempt, job.started_at) == (
        JobStatus.RUNNING,
        1,
        now - timedelta(hours=1),
    )
    assert timezone.now() - job.heartbeat_at < timedelta(seconds=5)


def test_a_redelivery_takes_over_a_stale_job_and_drops_on_a_live_one(make_job):
    now = timezone.now()
    live = make_job(JobStatus.RUNNING, 10, now)
    stale = make_job(JobStatus.RUNNING, 91, now)

    assert _claim(live.pk, 1) is None
    assert _claim(stale.pk, 1) is not None
