"""Running exports: claiming a part, writing it in every asked format in one pass, storing the
files and settling the export rows."""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from stickerloop import events
from stickerloop.lifecycle import heartbeat, lock_unfinished, mark_finished, mark_running
from stickerloop.storage import delete_keys, save_committed, write_complete_marker
from training_bridge.audit import audit_record
from training_bridge.exports.create import export_part_range, work_dir
from training_bridge.exports.formats import VersionFacts, writer_for
from training_bridge.exports.reading import (
    ExportInputError,
    StorageReader,
    export_batches,
)
from training_bridge.exports.tar import OutputFile, combined_sha256
from training_bridge.models import (
    TERMINAL_TASK_STATUSES,
    AuditAction,
    DatasetExport,
    TaskStatus,
    VersionStatus,
)

logger = logging.getLogger(__name__)


def _lock_export(export_id: int) -> DatasetExport | None:
    """The export locked until the caller's transaction ends; None when it has ended."""
    return lock_unfinished(
        DatasetExport.objects.select_related("version"), export_id, finished=TERMINAL_TASK_STATUSES
    )


@transaction.atomic
def _export_claim(export_id: int, part: int) -> DatasetExport | None:
    """Mark the export running for ``part``; None when the export has ended or the part is
    done. A part found running is a redelivery after its worker died: it runs again and
    overwrites its own keys."""
    export = _lock_export(export_id)
    if export is None or str(part) in export.part_results:
        return None
    if not 0 <= part < export.parts:
        _export_finish_locked(
            export, status=TaskStatus.FAILED, error=f"Export {export.pk} has no part {part}."
        )
        return None
    if export.version.status == VersionStatus.RETIRED:
        _export_finish_locked(
            export, status=TaskStatus.FAILED, error="The version was retired before the export ran."
        )
        return None
    mark_running(
        export, keep_started_at=True, count_attempt=True, fields={"heartbeat_at": timezone.now()}
    )
    return export


@transaction.atomic
def _export_finish_part(
    export_id: int, *, part: int, files: list[dict], cpu_seconds: float
) -> bool:
    """Record a finished part; the last part to finish finishes the export. False when the
    export failed meanwhile (another part failed): the caller's files are not part of it.
    True when it succeeded meanwhile: a requeued part ran twice, and its keys are the ones
    the export holds."""
    export = DatasetExport.objects.select_for_update().select_related("version").get(pk=export_id)
    if export.status == TaskStatus.SUCCEEDED:
        return True
    if export.status in TERMINAL_TASK_STATUSES:
        return False
    export.part_results[str(part)] = {"files": files, "cpu_seconds": cpu_seconds}
    export.save(update_fields=["part_results"])
    if len(export.part_results) < export.parts:
        return True
    results = export.part_results.values()
    files = sorted((f for r in results for f in r["files"]), key=lambda f: f["name"])
    # The marker goes last, under the lock: a reader of the bucket takes the export for whole
    # only once every part's files are in place. Should it fail, the transaction rolls back
    # and the part runs again.
    write_complete_marker(
        export.storage_prefix,
        [{"name": f["name"], "size": f["size"], "sha256": f["sha256"]} for f in files],
    )
    _export_finish_locked(
        export,
        status=TaskStatus.SUCCEEDED,
        files=files,
        cpu_seconds=round(sum(r["cpu_seconds"] for r in results), 3),
    )
    return True


def _export_finish_locked(
    export: DatasetExport,
    *,
    status: str,
    error: str = "",
    files: list[dict] | None = None,
    cpu_seconds: float | None = None,
) -> None:
    fields = {}
    if status == TaskStatus.FAILED and export.part_results:
        # Parts that finished before another failed stored files that no export owns now.
        transaction.on_commit(partial(delete_keys, _part_keys(export.part_results)))
        fields["part_results"] = {}
    if files is not None:
        fields["files"] = files
        fields["size_bytes"] = sum(f["size"] for f in files)
        fields["sha256"] = combined_sha256(
            [
                OutputFile(name=f["name"], path=Path(), size=f["size"], sha256=f["sha256"])
                for f in files
            ]
        )
        fields["done"] = export.total
    mark_finished(export, status=status, error=error, fields=fields)
    action = (
        AuditAction.EXPORT_SUCCEEDED
        if status == TaskStatus.SUCCEEDED
        else AuditAction.EXPORT_FAILED
    )
    audit_record(
        action,
        version=export.version,
        export=export,
        details={
            "sha256": export.sha256,
            "size_bytes": export.size_bytes,
            "error": error,
            "cpu_seconds": cpu_seconds,
        },
    )
    if status == TaskStatus.SUCCEEDED:
        events.publish(
            events.EXPORT_READY,
            object_type="dataset_export",
            object_id=export.pk,
            data={"dataset_version": export.version_id, "format": export.format},
        )


def _part_keys(part_results: dict) -> list[str]:
    return [f["key"] for result in part_results.values() for f in result["files"]]


@transaction.atomic
def _export_finish(
    export_id: int,
    *,
    status: str,
    error: str = "",
    files: list[dict] | None = None,
    cpu_seconds: float | None = None,
) -> None:
    export = _lock_export(export_id)
    if export is None:
        return
    _export_finish_locked(export, status=status, error=error, files=files, cpu_seconds=cpu_seconds)


class _MovableFile(File):
    """A finished local file that a local storage may move into place instead of copying."""

    def temporary_file_path(self) -> str:
        return self.name


def _store_outputs(export: DatasetExport, outputs: list[OutputFile]) -> list[dict]:
    """Store a part's files, each written under a staging key and committed by name: a run
    killed halfway leaves no export file that is a part of one."""
    stored = []
    for output in outputs:
        key = f"{export.storage_prefix}{output.name}"
        with open(output.path, "rb") as fh:
            save_committed(key, _MovableFile(fh, name=str(output.path)))
        stored.append(
            {"name": output.name, "key": key, "size": output.size, "sha256": output.sha256}
        )
    return sorted(stored, key=lambda f: f["name"])


def dataset_export_run(*, export_id: int) -> None:
    """Write one export, every part in turn, here and now (tests and local copies)."""
    parts = DatasetExport.objects.values_list("parts", flat=True).get(pk=export_id)
    for part in range(parts):
        dataset_exports_run(export_ids=[export_id], part=part)


def dataset_exports_run(*, export_ids: list[int], part: int = 0) -> None:
    """Write ``part`` of exports of one version in one pass: stream that range of the manifest
    and its files into each export's local files, move them into storage under deterministic
    keys, record sizes and checksums; the last part to finish finishes each export.

    Memory stays bounded: entries arrive in batches of at most 5,000 entries or 32 MB of files,
    and each batch is written out (a Parquet row group, a run of archive members) before the
    next is read. Progress moves after a batch, at most every 2% (and 2,000 entries). A file
    that no longer matches the manifest fails every export of the pass; a writer's own failure
    fails only its export.
    """
    claimed = [e for e in (_export_claim(i, part) for i in export_ids) if e is not None]
    if not claimed:
        return
    version, parts = claimed[0].version, claimed[0].parts
    for export in claimed:
        if (export.version_id, export.parts) != (version.pk, parts):
            _export_finish(
                export.pk,
                status=TaskStatus.FAILED,
                error=f"Export {export.pk} is not of version {version.pk} in {parts} part(s); "
                "one pass writes one version.",
            )
    claimed = [e for e in claimed if (e.version_id, e.parts) == (version.pk, parts)]
    start, stop = export_part_range(version.entry_count, parts, part)
    with _collector_paused():
        _exports_write(claimed, version, parts, part, start, stop)


@contextmanager
def _collector_paused():
    """Pause Python's cycle collector: a pass allocates millions of short-lived tuples and
    strings, none in cycles, and each burst of allocations would otherwise walk every object
    the worker holds (a third of an export's time in a Celery worker, measured)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# A part's scratch folder: export-<id>-<part>-<host>~<pid>-<random>. The host and process
# tell a later run whether the writer is gone (see scratch_clean).
_SCRATCH_NAME = re.compile(r"^export-\d+-\d+-(?P<host>.*)~(?P<pid>\d+)-[^-~]*$")


def _scratch_prefix(export_id: int, part: int) -> str:
    return f"export-{export_id}-{part}-{socket.gethostname()}~{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_clean() -> list[str]:
    """Remove the scratch folders that export runs on this host left when their process was
    killed (a run removes its own as it ends); return their names. Folders of live processes
    and of other hosts (a shared work dir) stay."""
    scratch = work_dir() / "scratch"
    if not scratch.is_dir():
        return []
    host, removed = socket.gethostname(), []
    for folder in sorted(scratch.iterdir()):
        match = _SCRATCH_NAME.match(folder.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    if removed:
        logger.warning("removed scratch of killed export runs: %s", removed)
    return removed


def _exports_write(claimed, version, parts: int, part: int, start: int, stop: int) -> None:
    """Write ``part`` of each claimed export and settle it (see ``dataset_exports_run``),
    stamping the exports' heartbeat from a thread meanwhile."""
    scratch_clean()
    with heartbeat(DatasetExport.objects.filter(pk__in=[e.pk for e in claimed])):
        _exports_write_parts(claimed, version, parts, part, start, stop)


def _exports_write_parts(claimed, version, parts: int, part: int, start: int, stop: int) -> None:
    cpu_started = time.process_time()
    scratch = work_dir() / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    folders: dict[int, Path] = {}
    writers: dict[int, object] = {}
    failed: dict[int, str] = {}
    outputs: dict[int, list[OutputFile]] = {}
    reader = StorageReader()
    try:
        facts = VersionFacts.read(version, parts)
        for export in claimed:
            folders[export.pk] = Path(
                tempfile.mkdtemp(prefix=_scratch_prefix(export.pk, part), dir=scratch)
            )
            try:
                writers[export.pk] = writer_for(export, folders[export.pk], part, facts)
            except (OSError, ValueError) as exc:
                failed[export.pk] = str(exc)
        # At most about 50 progress writes per export.
        step = max(2000, version.entry_count // 50)
        unreported = 0
        for batch in export_batches(version, reader, start, stop):
            for pk, writer in list(writers.items()):
                try:
                    writer.add_batch(batch)
                except (OSError, ValueError) as exc:
                    failed[pk] = str(exc)
                    writers.pop(pk).abort()
            if not writers:
                break
            unreported += len(batch)
            if unreported >= step:
                # Parts add to one counter; a redelivered part may count twice until the end.
                DatasetExport.objects.filter(pk__in=list(writers)).update(
                    done=Least(F("done") + unreported, F("total"))
                )
                unreported = 0
        for pk, writer in list(writers.items()):
            try:
                outputs[pk] = writer.close()
            except (OSError, ValueError) as exc:
                failed[pk] = str(exc)
            writers.pop(pk)
        cpu_seconds = round(time.process_time() - cpu_started, 3)
        for export in claimed:
            if export.pk in failed:
                logger.warning("export %s failed: %s", export.pk, failed[export.pk])
                _export_finish(export.pk, status=TaskStatus.FAILED, error=failed[export.pk])
                continue
            try:
                files = _store_outputs(export, outputs[export.pk])
            except (ExportInputError, OSError) as exc:
                logger.warning("export %s failed: %s", export.pk, exc)
                _export_finish(export.pk, status=TaskStatus.FAILED, error=str(exc))
                continue
            if not _export_finish_part(export.pk, part=part, files=files, cpu_seconds=cpu_seconds):
                delete_keys([f["key"] for f in files])
    except (ExportInputError, OSError) as exc:
        # Reading the version failed: nothing of this pass is an export of it.
        for writer in writers.values():
            writer.abort()
        logger.warning("exports %s failed: %s", [e.pk for e in claimed], exc)
        for export in claimed:
            _export_finish(export.pk, status=TaskStatus.FAILED, error=str(exc))
    finally:
        reader.close()
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)


def dataset_exports_fail(*, export_ids: list[int], error: str) -> None:
    """Mark exports failed from outside their run (the task hit its time limit or crashed);
    those already finished keep their result."""
    for export_id in export_ids:
        _export_finish(export_id, status=TaskStatus.FAILED, error=error)
