"""Workers killed (SIGKILL) while they write to a bucket on a real S3-compatible server
(moto's): the beat sweep brings the work back, and it ends in exactly one complete object set
(every file once, the complete marker last, nothing staged left) and one model version."""

import json

import pytest

from generation.models import ModelVersion
from stickerloop.storage import COMPLETE_MARKER, STAGING_SUFFIX
from tests import factories
from tests.conftest import wait_for
from training_bridge.exports.create import dataset_export_create
from training_bridge.exports.recovery import dataset_exports_recover
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import JobStatus, TrainingJob
from training_bridge.models import DatasetExport

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db):
    """A transactional test empties every table after it, the role groups included."""
    factories.ensure_roles()


def _object_set(moto_server, bucket: str, prefix: str) -> tuple[list[str], dict | None]:
    """The keys under ``prefix`` and its complete marker (None when there is none)."""
    keys = [k for k in moto_server.keys(bucket) if k.startswith(prefix)]
    if f"{prefix}{COMPLETE_MARKER}" not in keys:
        return keys, None
    body = moto_server.client().get_object(Bucket=bucket, Key=f"{prefix}{COMPLETE_MARKER}")
    return keys, json.loads(body["Body"].read())


def test_a_default_worker_killed_during_an_export_to_the_bucket_ends_in_one_complete_export(
    s3_bucket, moto_server, start_worker, models, settings
):
    # 16 entries in parts of 2: eight part tasks, so the kill lands between parts
    settings.DATASET_EXPORT_PART_ENTRIES = 2
    settings.SWEEP_STALE_SECONDS = 3
    version = factories.dataset_version(models, purpose="alignment", train=12, validation=4)
    env = {
        **moto_server.env(s3_bucket),
        "STICKERLOOP_DATASET_EXPORT_PART_ENTRIES": 2,
        "STICKERLOOP_HEARTBEAT_SECONDS": 1,
    }
    first = start_worker("default", **env)
    export = dataset_export_create(version=version, export_format="parquet", requested_by=None)
    assert export.parts == 8

    def some_parts_done() -> bool:
        export.refresh_from_db()
        return len(export.part_results) >= 1

    wait_for(some_parts_done, timeout=120, interval=0.02, message=first.log()[-3000:])
    first.kill()
    export.refresh_from_db()
    assert export.status == "running" and 1 <= len(export.part_results) < 8
    # no marker: what the killed run stored does not look like an export
    assert _object_set(moto_server, s3_bucket, export.storage_prefix)[1] is None

    second = start_worker("default", **env)

    def recovered() -> bool:
        dataset_exports_recover()  # what beat runs every SWEEP_EVERY_SECONDS
        export.refresh_from_db()
        return export.status in ("succeeded", "failed")

    wait_for(recovered, timeout=120, interval=1, message=second.log()[-3000:])
    assert export.status == "succeeded", export.error
    keys, marker = _object_set(moto_server, s3_bucket, export.storage_prefix)
    stored = sorted(item["key"] for item in export.files)
    assert len(stored) == len(set(stored)) == len(export.files)
    assert keys == sorted([*stored, f"{export.storage_prefix}{COMPLETE_MARKER}"])
    assert marker == {
        "files": [
            {"name": item["name"], "size": item["size"], "sha256": item["sha256"]}
            for item in export.files
        ]
    }
    assert DatasetExport.objects.filter(version=version).count() == 1
    assert not [k for k in moto_server.keys(s3_bucket) if k.endswith(STAGING_SUFFIX)]


def test_a_train_worker_killed_during_a_job_writing_to_the_bucket_ends_with_one_model(
    s3_bucket, moto_server, start_worker, models, settings, tmp_path
):
    settings.TRAINING_DIR = tmp_path / "training"
    settings.TRAINING_STALE_SECONDS = 3
    version = factories.dataset_version(models, purpose="alignment")
    env = {
        **moto_server.env(s3_bucket),
        "STICKERLOOP_TRAINING_DIR": settings.TRAINING_DIR,
        "STICKERLOOP_MODELS_DIR": tmp_path / "models",
        "STICKERLOOP_TRAINING_DEVICE": "cpu",
        "STICKERLOOP_TRAINING_STALE_SECONDS": 3,
        "STICKERLOOP_HEARTBEAT_SECONDS": 1,
        "OMP_NUM_THREADS": 1,
    }
    job = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": version},
        params={
            "max_train_steps": 30,
            "train_batch_size": 2,
            "checkpointing_steps": 5,
            "method": "lora",
        },
        evaluate=False,
    )
    first = start_worker("train", **env)

    def checkpointed() -> bool:
        job.refresh_from_db()
        return (job.last_checkpoint_step or 0) >= 5

    wait_for(checkpointed, timeout=180, interval=0.05, message=first.log()[-3000:])
    first.kill()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.step < 30
    second = start_worker("train", **env)

    def finished() -> bool:
        job_tasks.sweep()  # what beat runs every SWEEP_EVERY_SECONDS
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, timeout=180, interval=1, message=second.log()[-3000:])
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log_tail[-2000:])
    [model] = ModelVersion.objects.filter(produced_by_job=job)
    prefix = f"models/training-job-{job.pk}/"
    assert model.uri == f"s3://{s3_bucket}/{prefix}"
    keys, marker = _object_set(moto_server, s3_bucket, prefix)
    assert keys == sorted(
        [*(f"{prefix}{item['name']}" for item in marker["files"]), f"{prefix}{COMPLETE_MARKER}"]
    )
    assert "model_index.json" in [item["name"] for item in marker["files"]]
    assert not [k for k in keys if "/checkpoint-" in k]
    assert not [k for k in moto_server.keys(s3_bucket) if k.endswith(STAGING_SUFFIX)]
    assert TrainingJob.objects.get(pk=job.pk).output_model_version_id == model.pk
