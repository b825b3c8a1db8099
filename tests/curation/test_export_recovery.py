"""The export sweep against real PostgreSQL: which exports it requeues and with which parts,
that a part run twice is recorded once, and that a killed run's scratch is removed."""

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from tests import factories
from training_bridge import tasks as curation_tasks
from training_bridge.exports.create import dataset_export_create, work_dir
from training_bridge.exports.recovery import dataset_exports_recover, dataset_exports_requeue
from training_bridge.exports.run import dataset_export_run, dataset_exports_run, scratch_clean
from training_bridge.models import DatasetExport

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The broker is the boundary: record what the sweep sends."""
    messages = []
    monkeypatch.setattr(curation_tasks.run_exports, "delay", lambda *a: messages.append(a))
    return messages


@pytest.fixture
def version(models, settings):
    settings.SWEEP_STALE_SECONDS = 60
    settings.SWEEP_QUEUED_SECONDS = 900
    return factories.dataset_version(models, purpose="alignment")


def _export(version, status, age_seconds, now, *, parts=1, part_results=None):
    export = dataset_export_create(version=version, export_format="parquet")
    DatasetExport.objects.filter(pk=export.pk).update(
        status=status,
        sha256="0" * 64 if status == "succeeded" else "",
        parts=parts,
        part_results=part_results or {},
        heartbeat_at=now - timedelta(seconds=age_seconds),
    )
    return export


def test_the_sweep_requeues_the_unfinished_parts_of_stale_and_lost_exports(
    version, sent, django_capture_on_commit_callbacks
):
    now = timezone.now()
    done = {"1": {"files": [], "cpu_seconds": 0.1}}
    dead = _export(version, "running", 61, now, parts=3, part_results=done)
    dead_too = _export(version, "running", 300, now, parts=3, part_results=done)
    alive = _export(version, "running", 59, now)
    lost = _export(version, "queued", 901, now)
    waiting = _export(version, "queued", 899, now)
    ended = _export(version, "succeeded", 3600, now)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        requeued = dataset_exports_requeue(now=now)
    # then: one pass per part left of the two 3-part exports, and the lost one's only part
    assert requeued == [dead.pk, dead_too.pk, lost.pk]
    assert sent == [([lost.pk], 0), ([dead.pk, dead_too.pk], 0), ([dead.pk, dead_too.pk], 2)]
    rows = dict(DatasetExport.objects.values_list("pk", "status"))
    assert rows == {
        dead.pk: "queued",
        dead_too.pk: "queued",
        alive.pk: "running",
        lost.pk: "queued",
        waiting.pk: "queued",
        ended.pk: "succeeded",
    }
    assert DatasetExport.objects.get(pk=dead.pk).heartbeat_at == now


def test_a_requeued_export_runs_to_one_result_and_its_part_again_changes_nothing(version):
    # given: a dead worker's export, requeued by the sweep
    now = timezone.now()
    export = _export(version, "running", 120, now)
    dataset_exports_requeue(now=now)
    # when: the sweep's message runs it, then the broker's late redelivery of the old one
    dataset_export_run(export_id=export.pk)
    export.refresh_from_db()
    first = (export.status, export.files, export.sha256, export.attempts)
    dataset_exports_run(export_ids=[export.pk], part=0)
    # then
    export.refresh_from_db()
    assert first[0] == "succeeded" and first[3] == 1
    assert (export.status, export.files, export.sha256, export.attempts) == first
    assert DatasetExport.objects.count() == 1


def test_scratch_of_killed_runs_on_this_host_is_removed(version):
    scratch = work_dir() / "scratch"
    scratch.mkdir(parents=True)
    host = socket.gethostname()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    names = {
        "killed": f"export-7-0-{host}~{dead_pid}-abc_123",
        "alive": f"export-7-1-{host}~{os.getpid()}-def456",
        "elsewhere": f"export-8-0-other-host~{dead_pid}-ghi789",
        "not_ours": "tmp12345.csv",
    }
    for name in names.values():
        (scratch / name).mkdir()
        (scratch / name / "part.parquet").write_bytes(b"x" * 10)
    # when
    removed = scratch_clean()
    # then
    assert removed == [names["killed"]]
    assert sorted(p.name for p in scratch.iterdir()) == sorted(
        [names["alive"], names["elsewhere"], names["not_ours"]]
    )
    # and the sweep cleans too
    (scratch / names["killed"]).mkdir()
    assert dataset_exports_recover() == []
    assert not (scratch / names["killed"]).exists()


def test_a_finished_run_leaves_no_scratch(version):
    export = dataset_export_create(version=version, export_format="imagefolder")

    dataset_export_run(export_id=export.pk)

    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    assert list((work_dir() / "scratch").iterdir()) == []
