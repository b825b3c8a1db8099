"""Asking for exports of a dataset version (checked and queued, a task per part) and recording
their downloads."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from stickerloop.errors import ServiceConflict
from training_bridge import tasks as curation_tasks
from training_bridge.audit import audit_record
from training_bridge.models import (
    AuditAction,
    DatasetExport,
    DatasetVersion,
    ExportFormat,
    TaskStatus,
    VersionStatus,
)

DEFAULT_SHARD_SIZE = 1000
MAX_SHARD_SIZE = 100_000


def work_dir() -> Path:
    """Local scratch and cache space for exports: ``DATASET_WORK_DIR``, else beside the media
    folder (so tests, which give each test its own media folder, get their own)."""
    configured = getattr(settings, "DATASET_WORK_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT).parent / "dataset_work"


def export_drafts_allowed() -> bool:
    """Whether draft versions may be exported (``DATASET_EXPORT_DRAFTS``, default off: only
    published versions reach training)."""
    return bool(getattr(settings, "DATASET_EXPORT_DRAFTS", False))


def export_part_count(entry_count: int) -> int:
    """How many parts an export of ``entry_count`` entries is written in
    (``DATASET_EXPORT_PART_ENTRIES`` entries at most per part)."""
    per_part = max(1, int(getattr(settings, "DATASET_EXPORT_PART_ENTRIES", 50_000)))
    return max(1, -(-entry_count // per_part))


def export_part_range(total: int, parts: int, part: int) -> tuple[int, int]:
    """Manifest positions [start, stop) of ``part``: ``parts`` ranges of about equal size."""
    size = -(-total // parts) if total else 0
    return min(total, part * size), min(total, (part + 1) * size)


def _check_exportable(version: DatasetVersion) -> None:
    if version.status == VersionStatus.RETIRED:
        raise ServiceConflict(f"Version {version.pk} is retired; it cannot be exported.")
    if version.status == VersionStatus.DRAFT and not export_drafts_allowed():
        raise ServiceConflict(f"Version {version.pk} is a draft; publish it before exporting.")


def dataset_export_store(
    *,
    version: DatasetVersion,
    export_format: str,
    shard_size: int | None,
    requested_by: AbstractBaseUser | None,
) -> DatasetExport:
    """Check and store a queued export without dispatching it. Assumes the caller holds a
    transaction and dispatches or runs the export itself."""
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if export_format not in ExportFormat.values:
        raise ValidationError(
            {"format": [f"Unknown format {export_format!r}; use {', '.join(ExportFormat.values)}."]}
        )
    if export_format == ExportFormat.WEBDATASET:
        shard_size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
        if isinstance(shard_size, bool) or not 1 <= shard_size <= MAX_SHARD_SIZE:
            raise ValidationError(
                {"shard_size": [f"Must be between 1 and {MAX_SHARD_SIZE}, not {shard_size}."]}
            )
    elif shard_size is not None:
        raise ValidationError({"shard_size": ["Only WebDataset exports have shards."]})
    _check_exportable(version)
    export = DatasetExport.objects.create(
        version=version,
        format=export_format,
        shard_size=shard_size,
        total=version.entry_count,
        parts=export_part_count(version.entry_count),
        requested_by=requested_by,
    )
    export.storage_prefix = f"exports/v{version.pk}/{export.pk}-{export_format}/"
    export.save(update_fields=["storage_prefix"])
    audit_record(
        AuditAction.EXPORT,
        actor=requested_by,
        version=version,
        export=export,
        details={"format": export_format, "shard_size": shard_size},
    )
    return export


@transaction.atomic
def dataset_export_create(
    *,
    version: DatasetVersion,
    export_format: str,
    shard_size: int | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> DatasetExport:
    """Queue an export of a published version on the ``default`` queue (after commit)."""
    (export,) = dataset_exports_create(
        version=version,
        export_formats=[export_format],
        shard_size=shard_size,
        requested_by=requested_by,
    )
    return export


@transaction.atomic
def dataset_exports_create(
    *,
    version: DatasetVersion,
    export_formats: list[str],
    shard_size: int | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> list[DatasetExport]:
    """Queue exports of one version in several formats, written in one pass: the manifest is
    read and every file read and checked once for all of them. Each export keeps its own row,
    progress, files, checksum and audit events. ``shard_size`` is the WebDataset export's.
    A large version is written in parts (``DATASET_EXPORT_PART_ENTRIES``): a task per part,
    each one pass over its range of the manifest for every format.
    """
    if isinstance(export_formats, str) or not isinstance(export_formats, list | tuple):
        raise ValidationError({"formats": ["Must be a list of formats."]})
    if not export_formats:
        raise ValidationError({"formats": ["Name at least one format."]})
    repeated = sorted({f for f in export_formats if export_formats.count(f) > 1}, key=str)
    if repeated:
        raise ValidationError({"formats": [f"Each format once; repeated: {repeated[0]!r}."]})
    if shard_size is not None and ExportFormat.WEBDATASET not in export_formats:
        raise ValidationError({"shard_size": ["Only WebDataset exports have shards."]})
    exports = [
        dataset_export_store(
            version=version,
            export_format=fmt,
            shard_size=shard_size if fmt == ExportFormat.WEBDATASET else None,
            requested_by=requested_by,
        )
        for fmt in export_formats
    ]
    ids = [e.pk for e in exports]
    for part in range(exports[0].parts):
        curation_tasks.run_exports.delay_on_commit(ids, part)
    return exports


def export_file_download_name(export: DatasetExport, name: str) -> str:
    """The name a browser saves file ``name`` of ``export`` as: ``<dataset>-v<N>-<format>-
    <file>``, the dataset being its rule's name as a slug and a folder in the file's name a
    hyphen (``align-v3-parquet-train-00000-of-00001.parquet``); the format is not said
    twice when the file's name starts with it (``align-v3-imagefolder.tar``). Only ASCII
    letters, digits, dots, hyphens and underscores, never a leading dot: it needs no escaping
    in a header and names no folder or hidden file where it is saved."""
    dataset = slugify(export.version.rule.name)[:100].strip("-_") or "dataset"
    file = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "file"
    if not file.startswith(export.format):
        file = f"{export.format}-{file}"
    return f"{dataset}-v{export.version.number}-{file}"


@transaction.atomic
def dataset_export_download_record(
    *, export: DatasetExport, user: AbstractBaseUser, file_name: str | None
) -> dict:
    """Check that a file of the export may be downloaded and log who took it; the file's entry,
    with ``download_name``, the name to save it as (``export_file_download_name``).

    The caller has checked the user's role. ``file_name`` may be omitted for single-file exports.
    """
    export = DatasetExport.objects.select_related("version__rule").get(pk=export.pk)
    if export.status != TaskStatus.SUCCEEDED:
        raise ServiceConflict(f"Export {export.pk} is {export.status}; nothing to download yet.")
    if export.version.status == VersionStatus.RETIRED:
        raise ServiceConflict(f"Version {export.version_id} is retired; its exports are closed.")
    files = export.files
    if file_name is None:
        if len(files) != 1:
            raise ValidationError(
                {"file": [f"Export {export.pk} has {len(files)} files; name one of them."]}
            )
        entry = files[0]
    else:
        entry = next((f for f in files if f["name"] == file_name), None)
        if entry is None:
            raise ValidationError({"file": [f"Export {export.pk} has no file {file_name!r}."]})
    audit_record(
        AuditAction.DOWNLOAD,
        actor=user,
        version=export.version,
        export=export,
        details={"file": entry["name"], "sha256": entry["sha256"], "size": entry["size"]},
    )
    return {**entry, "download_name": export_file_download_name(export, entry["name"])}
