"""Exports run as Celery tasks on the ``default`` queue of a real worker (subprocess)."""

import os
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from training_bridge import tasks as curation_tasks
from training_bridge.exports.create import dataset_export_create, work_dir
from training_bridge.exports.recovery import dataset_exports_recover
from training_bridge.models import DatasetExport
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_exports_run_on_a_default_queue_worker(api, curator, make, start_worker, settings):
    rule = make.alignment_rule(
        ["a cat", "a dog", "a frog", "a bee"],
        curator,
        per_prompt=3,
        quality=5,
        validation_fraction=0.25,
    )
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)

    worker = start_worker("default")
    client = api(curator)
    ids = []
    for fmt, extra in [("imagefolder", {}), ("webdataset", {"shard_size": 5}), ("parquet", {})]:
        response = client.post(
            f"/api/dataset-versions/{version.pk}/exports/", {"format": fmt, **extra}, format="json"
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])

    def finished():
        rows = client.get(f"/api/dataset-exports/progress/?ids={','.join(map(str, ids))}").json()
        return all(r["status"] in ("succeeded", "failed") for r in rows) and rows

    rows = wait_for(finished, timeout=120, message=worker.log()[-3000:])
    assert [(r["status"], r["done"], r["total"], r["error"]) for r in rows] == [
        ("succeeded", 12, 12, "")
    ] * 3
    exports = {e.format: e for e in DatasetExport.objects.all()}
    assert [f["name"] for f in exports["webdataset"].files] == [
        "README.md",
        "train-000000.tar",
        "train-000001.tar",
        "validation-000000.tar",
    ]
    assert all(
        e.attempts == 1 and len(e.sha256) == 64 and e.size_bytes > 0 for e in exports.values()
    )

    # the three formats again in one request: one task writes them in one pass, to the same bytes
    response = client.post(
        f"/api/dataset-versions/{version.pk}/exports/batch/",
        {"formats": ["imagefolder", "webdataset", "parquet"], "shard_size": 5},
        format="json",
    )
    assert response.status_code == 201
    ids = [e["id"] for e in response.json()]
    rows = wait_for(finished, timeout=120, message=worker.log()[-3000:])
    assert [(r["status"], r["done"], r["error"]) for r in rows] == [("succeeded", 12, "")] * 3
    together = DatasetExport.objects.in_bulk(ids)
    assert {e.format: e.sha256 for e in together.values()} == {
        fmt: e.sha256 for fmt, e in exports.items()
    }

    # and in parts (at most 5 entries each: 3 parts, a task each)
    settings.DATASET_EXPORT_PART_ENTRIES = 5
    response = client.post(
        f"/api/dataset-versions/{version.pk}/exports/batch/",
        {"formats": ["imagefolder", "parquet"]},
        format="json",
    )
    ids = [e["id"] for e in response.json()]
    rows = wait_for(finished, timeout=120, message=worker.log()[-3000:])
    assert [(r["status"], r["done"], r["error"]) for r in rows] == [("succeeded", 12, "")] * 2
    in_parts = DatasetExport.objects.in_bulk(ids)
    # a Parquet file per split and part (of 4 positions) that has entries of it
    positions = version.entries.values_list("split", "position")
    having = {
        split: len({position // 4 for s, position in positions if s == split})
        for split in ("train", "validation")
    }
    assert sorted(f["name"] for e in in_parts.values() for f in e.files) == [
        "README.md",
        *(f"imagefolder-{i:05d}-of-00003.tar" for i in range(3)),
        *(
            f"{split}-{i:05d}-of-{having[split]:05d}.parquet"
            for split in ("train", "validation")
            for i in range(having[split])
        ),
    ]
    assert {e.attempts for e in in_parts.values()} == {3}


def test_a_killed_export_is_requeued_by_the_sweep_and_its_scratch_removed(
    curator, make, start_worker, settings
):
    # given: a published version whose last file blocks its reader (a FIFO in its place), so
    # that the kill lands mid-export, with the scratch folder made and the row RUNNING
    rule = make.alignment_rule(["a cat", "a dog"], curator, per_prompt=3, quality=5)
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    key = version.entries.order_by("position").last().file_key
    path = Path(settings.MEDIA_ROOT) / key
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    # The default visibility timeout (an hour): only the sweep can bring the export back.
    env = {"STICKERLOOP_HEARTBEAT_SECONDS": 1, "STICKERLOOP_SWEEP_STALE_SECONDS": 3}
    settings.SWEEP_STALE_SECONDS = 3
    first = start_worker("default", **env)
    export = dataset_export_create(version=version, export_format="imagefolder")
    scratch = work_dir() / "scratch"

    def blocked():
        export.refresh_from_db()
        return export.status == "running" and scratch.is_dir() and any(scratch.iterdir())

    wait_for(blocked, timeout=60, message=first.log()[-3000:])
    # The blocked worker still beats: the sweep leaves a live export alone.
    time.sleep(4)
    assert dataset_exports_recover() == []
    # when: the worker dies
    first.kill()
    killed_at = time.monotonic()
    path.unlink()
    path.write_bytes(data)
    second = start_worker("default", **env)

    def recovered():
        curation_tasks.sweep_exports()  # what beat runs every SWEEP_EVERY_SECONDS
        export.refresh_from_db()
        return export.is_finished

    wait_for(recovered, timeout=120, interval=1, message=second.log()[-3000:])
    # then: one export with its one file, within 2 minutes, and no scratch left
    assert time.monotonic() - killed_at < 120
    assert (export.status, export.error, export.attempts, export.done) == ("succeeded", "", 2, 6)
    assert [f["name"] for f in export.files] == ["imagefolder.tar"]
    assert (Path(settings.MEDIA_ROOT) / export.files[0]["key"]).stat().st_size == (
        export.size_bytes
    )
    assert DatasetExport.objects.count() == 1
    assert list(scratch.iterdir()) == []
