"""A finished job's model registered with a bucket (moto's S3 server): copied into the bucket
without its checkpoints, marker last, or, for a run that wrote it there itself, taken from its
``s3://`` URI; a URI outside the bucket is refused naming it, and nothing is registered. The
copies that stopped jobs left incomplete are swept away."""

import logging

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.timezone import now

from generation.model_store import model_folder_publish
from generation.models import ModelVersion
from stickerloop.storage import (
    COMPLETE_MARKER,
    STAGING_SUFFIX,
    staging_key,
)
from tests import factories
from tests.factories import fake_finished_output
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import JobStatus, Launcher, TrainingJob
from training_bridge.jobs.output import training_job_register_output

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(s3_bucket, models, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    return training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": factories.dataset_version(models, purpose="alignment")},
        params={"max_train_steps": 4, "train_batch_size": 2},
        launcher=Launcher.EXTERNAL,
        evaluate=False,
    )


def test_a_local_output_is_copied_to_the_bucket_without_checkpoints(job, s3_bucket, moto_server):
    folder = fake_finished_output(job)
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "state.json").write_text("{}")

    version = training_job_register_output(job=job)

    prefix = f"models/training-job-{job.pk}/"
    assert version.uri == f"s3://{s3_bucket}/{prefix}"
    keys = moto_server.keys(s3_bucket)
    model_keys = [k.removeprefix(prefix) for k in keys if k.startswith(prefix)]
    local = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith("checkpoint-")
    )
    assert model_keys == sorted([*local, COMPLETE_MARKER])
    assert not [k for k in keys if k.endswith(STAGING_SUFFIX)]
    job.refresh_from_db()
    assert (job.status, job.output_model_version_id) == (JobStatus.SUCCEEDED, version.pk)


def test_an_output_the_run_wrote_to_the_bucket_registers_by_its_uri(job, s3_bucket, api, engineer):
    uri = model_folder_publish(fake_finished_output(job), name="cluster-run-7")

    response = api(engineer).post(
        f"/api/training-jobs/{job.pk}/register-output/", {"output_dir": uri}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert ModelVersion.objects.get(pk=response.json()["model_version"]).uri == uri


def test_an_output_uri_outside_the_bucket_is_refused_naming_it(job, s3_bucket, api, engineer):
    response = api(engineer).post(
        f"/api/training-jobs/{job.pk}/register-output/",
        {"output_dir": "s3://elsewhere/models/run/"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "output_dir": [
            f"s3://elsewhere/models/run/ is outside the bucket '{s3_bucket}' "
            "(STICKERLOOP_S3_BUCKET)."
        ]
    }
    assert not ModelVersion.objects.filter(parent__isnull=False).exists()
    job.refresh_from_db()
    assert job.output_model_version_id is None


def _job_with_copy(status: str, *, complete: bool) -> tuple[TrainingJob, str]:
    """A job in ``status`` and the model copy a run of it stored in the bucket: a committed file
    and either the complete marker or a staged file (the copy stopped there)."""
    job = TrainingJob.objects.create(
        recipe="finetune",
        base_model_version=factories.model_version(),
        params={},
        status=status,
        total_steps=4,
        heartbeat_at=now(),
    )
    prefix = f"models/training-job-{job.pk}/"
    # Written as the objects they end as, one request each (committing by name takes three).
    default_storage.save(f"{prefix}model_index.json", ContentFile(b"{}"))
    if complete:
        default_storage.save(f"{prefix}{COMPLETE_MARKER}", ContentFile(b'{"files": []}'))
    else:
        default_storage.save(staging_key(f"{prefix}unet/weights.safetensors"), ContentFile(b"w"))
    return job, prefix


def test_the_training_sweep_removes_copies_stopped_jobs_left_and_keeps_the_rest(
    s3_bucket, moto_server, settings, caplog
):
    # given: incomplete copies of a failed and a cancelled job, and of a running one; a
    # succeeded job's complete copy; a model folder uploaded by hand, no job's and unfinished
    settings.SWEEP_STALE_SECONDS = 0
    settings.STORAGE_STAGED_MAX_AGE_SECONDS = 0
    failed, failed_prefix = _job_with_copy(JobStatus.FAILED, complete=False)
    cancelled, cancelled_prefix = _job_with_copy(JobStatus.CANCELLED, complete=False)
    _, running_prefix = _job_with_copy(JobStatus.RUNNING, complete=False)
    _, done_prefix = _job_with_copy(JobStatus.SUCCEEDED, complete=True)
    default_storage.save("models/by-hand/model_index.json", ContentFile(b"{}"))
    kept = [
        k
        for k in moto_server.keys(s3_bucket)
        if k.startswith((running_prefix, done_prefix, "models/by-hand/"))
    ]

    with caplog.at_level(logging.WARNING, logger="stickerloop.storage"):
        job_tasks.sweep()  # what beat runs every SWEEP_EVERY_SECONDS

    assert moto_server.keys(s3_bucket) == kept
    assert len(kept) == 5
    assert [r.getMessage() for r in caplog.records if r.name == "stickerloop.storage"] == [
        f"removed 2 staged object(s) under {prefix} (training job {job.pk} {status}): "
        f"{prefix}model_index.json, {prefix}unet/.weights.safetensors.staging"
        for job, prefix, status in sorted(
            [(failed, failed_prefix, "failed"), (cancelled, cancelled_prefix, "cancelled")],
            key=lambda row: row[1],
        )
    ]
    assert TrainingJob.objects.get(pk=failed.pk).status == JobStatus.FAILED
