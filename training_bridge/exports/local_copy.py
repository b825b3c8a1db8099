"""The local copy of a dataset version's export that training code reads: the newest finished
export (made now when there is none), unpacked once into a cache folder keyed by its checksum."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction

from stickerloop.errors import ServiceConflict
from training_bridge.exports.create import dataset_export_store, work_dir
from training_bridge.exports.reading import dataset_info
from training_bridge.exports.run import dataset_export_run
from training_bridge.models import DatasetExport, DatasetVersion, ExportFormat, TaskStatus


def _latest_export(version: DatasetVersion, export_format: str) -> DatasetExport | None:
    return (
        DatasetExport.objects.filter(
            version=version, format=export_format, status=TaskStatus.SUCCEEDED
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def _copy_out(key: str, target: Path) -> None:
    try:
        shutil.copyfile(default_storage.path(key), target)
    except NotImplementedError:
        with default_storage.open(key, "rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def _extract(key: str, target: Path) -> None:
    """Unpack a stored tar, streaming (a bucket object is read once, front to back)."""
    with default_storage.open(key, "rb") as src, tarfile.open(fileobj=src, mode="r|") as archive:
        archive.extractall(target, filter="data")


def dataset_version_local_copy(
    *, version: DatasetVersion, export_format: str = "imagefolder"
) -> Path:
    """A local folder holding the version in ``export_format``, ready for training code.

    ``imagefolder``: ``<root>/dataset.json``, ``<root>/train/metadata.jsonl`` and
    ``<root>/validation/metadata.jsonl`` (the latter only when the split has entries) with the
    files beside them, or ``<root>/<split>/<part>/...`` for an export written in parts;
    ``datasets.load_dataset("imagefolder", data_dir=root)`` loads either. ``webdataset``: the
    shards; ``parquet``: ``train-00000-of-00001.parquet`` ... (a file per split and part).
    Every format has its dataset card, ``README.md``; the last two also get ``dataset.json``.

    Uses the newest finished export of that format, or exports now (in this process) when there
    is none: call it from a task (training does: ``training_jobs.run`` on the ``train`` queue,
    ``training_jobs.prepare_external`` for a cluster), never in a request. The copy lives in a
    cache folder keyed by the export's checksum, filled in a temporary folder and renamed into
    place, so concurrent callers never see half a copy.

    Raises:
        ServiceConflict: the version is retired (or a draft while drafts may not be exported),
            or the export failed.
        ValidationError: unknown format.
    """
    export = _latest_export(version, export_format)
    if export is None:
        with transaction.atomic():
            export = dataset_export_store(
                version=version,
                export_format=export_format,
                shard_size=None,
                requested_by=None,
            )
        dataset_export_run(export_id=export.pk)
        export.refresh_from_db()
        if export.status != TaskStatus.SUCCEEDED:
            raise ServiceConflict(f"Exporting version {version.pk} failed: {export.error}")
    cache_root = work_dir() / "cache"
    target = cache_root / f"v{version.pk}-{export_format}-{export.sha256[:16]}"
    if (target / "dataset.json").is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=cache_root))
    try:
        if export_format == ExportFormat.IMAGEFOLDER:
            for item in export.files:
                _extract(item["key"], staging)
        else:
            for item in export.files:
                _copy_out(item["key"], staging / item["name"])
            (staging / "dataset.json").write_text(
                json.dumps(dataset_info(version), sort_keys=True) + "\n"
            )
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its copy is the same bytes.
            if not (target / "dataset.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
