"""Curation writes: rules, immutable dataset versions, publishing (and the training it starts),
exports into storage, weak-corpus imports and the audit log."""

from __future__ import annotations

import gc
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Count, F, Max
from django.db.models.functions import Least
from django.utils import timezone

from generation.models import Candidate, CandidateKind, CandidateOrigin
from generation.pipelines import sha256_hex
from stickerloop.api import ServiceConflict
from training_bridge import curation
from training_bridge import tasks as curation_tasks
from training_bridge.curation import PlannedEntry, RuleSpec
from training_bridge.models import (
    TERMINAL_TASK_STATUSES,
    AuditAction,
    AuditEvent,
    CandidateFingerprint,
    DatasetEntry,
    DatasetExport,
    DatasetKind,
    DatasetRule,
    DatasetVersion,
    ExportFormat,
    ImportFormat,
    TaskStatus,
    TrainingTrigger,
    TriggerStatus,
    VersionStatus,
    WeakImport,
    WeakSource,
)
from training_bridge.neardup import perceptual_hash
from training_bridge.rules import rule_spec_check, rule_values
from training_bridge.writers import (
    ExportBatch,
    ImagefolderWriter,
    OutputFile,
    ParquetWriter,
    WebDatasetWriter,
    combined_sha256,
)

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "stickerloop-manifest-1"
DEFAULT_SHARD_SIZE = 1000
MAX_SHARD_SIZE = 100_000
MAX_REPORTED_ERRORS = 1000
IMPORT_BATCH = 64
EXPORT_FILE_NAMES = {
    ExportFormat.IMAGEFOLDER: "imagefolder.tar",
    ExportFormat.PARQUET: "manifest.parquet",
}


def work_dir() -> Path:
    """Local scratch and cache space for exports: ``DATASET_WORK_DIR``, else beside the media
    folder (so tests, which give each test its own media folder, get their own)."""
    configured = getattr(settings, "DATASET_WORK_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT).parent / "dataset_work"


def export_drafts_allowed() -> bool:
    """Whether draft versions may be exported (``DATASET_EXPORT_DRAFTS``, default off: only
    published versions reach training)."""
    return bool(getattr(settings, "DATASET_EXPORT_DRAFTS", False))


def weak_import_root() -> Path:
    """The server folder that folder imports must lie under (``WEAK_IMPORT_ROOT``)."""
    configured = getattr(settings, "WEAK_IMPORT_ROOT", None)
    return Path(configured) if configured else Path(settings.VAR_DIR) / "imports"


def _audit(action: str, *, actor=None, version=None, export=None, details=None) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action, actor=actor, version=version, export=export, details=details or {}
    )


# Rules -------------------------------------------------------------------------------------------


@transaction.atomic
def dataset_rule_create(*, values: dict, created_by: AbstractBaseUser | None = None) -> DatasetRule:
    """Check and store a rule. ``values``: see ``rules.rule_spec_check`` plus ``name`` and
    ``description``."""
    name = (values.get("name") or "").strip()
    errors = {}
    if not name:
        errors["name"] = ["Give the rule a name."]
    elif DatasetRule.objects.filter(name=name).exists():
        errors["name"] = [f"A rule named {name!r} exists already."]
    try:
        spec = rule_spec_check(values=values)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    rule = DatasetRule(name=name, description=values.get("description", ""), created_by=created_by)
    _apply_spec(rule, spec, training_trigger=values.get("training_trigger"))
    rule.full_clean()
    rule.save()
    rule.campaigns.set(values.get("campaigns") or [])
    rule.weak_sources.set(values.get("weak_sources") or [])
    return rule


def _apply_spec(rule: DatasetRule, spec: RuleSpec, *, training_trigger) -> None:
    for name in (
        "purpose",
        "kind",
        "consensus_method",
        "min_judgments",
        "exclude_gold",
        "exclude_paused_only",
        "min_motion_score",
        "weak_label_filters",
        "exclude_held_out",
        "per_prompt_cap",
        "dedup_max_distance",
        "validation_fraction",
        "split_seed",
        "caption_source",
        "caption_template",
    ):
        setattr(rule, name, getattr(spec, name))
    rule.conditions = list(spec.conditions)
    rule.motion_buckets = list(spec.motion_buckets)
    if training_trigger is not None:
        training_trigger = {"params": {}, **training_trigger}
    rule.training_trigger = training_trigger


@transaction.atomic
def dataset_rule_update(*, rule: DatasetRule, changes: dict) -> DatasetRule:
    """Change a rule's settings; versions already built keep the settings they were built with."""
    rule = DatasetRule.objects.select_for_update().get(pk=rule.pk)
    values = {**rule_values(rule), **changes}
    errors = {}
    name = (values.get("name") or "").strip()
    if not name:
        errors["name"] = ["Give the rule a name."]
    elif DatasetRule.objects.filter(name=name).exclude(pk=rule.pk).exists():
        errors["name"] = [f"A rule named {name!r} exists already."]
    try:
        spec = rule_spec_check(values=values)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    rule.name = name
    rule.description = values.get("description", "")
    _apply_spec(rule, spec, training_trigger=values.get("training_trigger"))
    rule.full_clean()
    rule.save()
    rule.campaigns.set(values.get("campaigns") or [])
    rule.weak_sources.set(values.get("weak_sources") or [])
    return rule


# Versions ----------------------------------------------------------------------------------------


def manifest_checksum(*, purpose: str, kind: str, entries: list[PlannedEntry]) -> str:
    """sha256 over a header line and one canonical JSON line per entry, in manifest order.

    The lines hold what identifies the data (candidate, file checksum, caption, split, labels,
    confidences, scores, provenance), not when or by whom it was built, so the same rule on the
    same judgments gives the same checksum.
    """
    digest = hashlib.sha256()

    def line(value) -> bytes:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()

    digest.update(line({"format": MANIFEST_FORMAT, "purpose": purpose, "kind": kind}) + b"\n")
    for entry in entries:
        digest.update(line(entry.canonical()) + b"\n")
    return digest.hexdigest()


_ENTRY_COLUMNS = (
    "version_id",
    "position",
    "candidate_id",
    "split",
    "caption",
    "file_key",
    "file_sha256",
    "file_ext",
    "label",
    "confidence",
    "labels",
    "confidences",
    "scores",
    "n_judgments",
    "model_version_name",
    "seed",
    "prompt_text",
    "teacher",
    "source_candidate_id",
    "source_file_key",
    "frames_prefix",
    "frame_count",
    "motion_score",
)
_JSON_COLUMNS = {"label", "labels", "confidences", "scores"}


def _copy_text(value) -> str:
    """A value in COPY's text format: \\N for NULL, and backslash, tab and line ends escaped."""
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


class _JsonCache:
    """json.dumps of the few distinct label dicts a manifest repeats (``{"aligned": true}``
    100,000 times): a lookup instead of an encode."""

    def __init__(self):
        self._known: dict = {}

    def __call__(self, value) -> str:
        try:
            # Types are part of the key: True == 1 == 1.0, but they encode differently.
            if isinstance(value, dict):
                key = (dict, tuple((k, type(v), v) for k, v in value.items()))
            else:
                key = (type(value), value)
            cached = self._known.get(key)
        except TypeError:
            return json.dumps(value)
        if cached is None:
            cached = self._known[key] = json.dumps(value)
        return cached


def _entry_values(version_id: int, position: int, entry: PlannedEntry) -> dict:
    return {
        "version_id": version_id,
        "position": position,
        "candidate_id": entry.candidate_id,
        "split": entry.split,
        "caption": entry.caption,
        "file_key": entry.file_key,
        "file_sha256": entry.file_sha256,
        "file_ext": entry.file_ext,
        "label": entry.label,
        "confidence": entry.confidence,
        "labels": entry.labels,
        "confidences": entry.confidences,
        "scores": entry.scores,
        "n_judgments": entry.n_judgments,
        "model_version_name": entry.model_version_name,
        "seed": entry.seed,
        "prompt_text": entry.prompt_text,
        "teacher": entry.teacher,
        "source_candidate_id": entry.source_candidate_id,
        "source_file_key": entry.source_file_key,
        "frames_prefix": entry.frames_prefix,
        "frame_count": entry.frame_count,
        "motion_score": entry.motion_score,
    }


def _copy_line(version_id: int, position: int, e: PlannedEntry, dump: _JsonCache) -> str:
    t = _copy_text
    return (
        f"{version_id}\t{position}\t{e.candidate_id}\t{e.split}\t{t(e.caption)}\t"
        f"{t(e.file_key)}\t{e.file_sha256}\t{t(e.file_ext)}\t{t(dump(e.label))}\t"
        f"{e.confidence!r}\t{t(dump(e.labels))}\t{t(dump(e.confidences))}\t"
        f"{t(dump(e.scores))}\t{e.n_judgments}\t{t(e.model_version_name)}\t{e.seed}\t"
        f"{t(e.prompt_text)}\t{t(e.teacher)}\t{t(e.source_candidate_id)}\t"
        f"{t(e.source_file_key)}\t{t(e.frames_prefix)}\t{e.frame_count}\t"
        f"{t(None if e.motion_score is None else repr(e.motion_score))}\n"
    )


def _insert_entries(version: DatasetVersion, entries: list[PlannedEntry]) -> None:
    """Store the manifest rows. On PostgreSQL through COPY: 100,000 rows take about 1 s, where
    ``bulk_create`` builds and binds 2.3 million parameters (about 6 s measured)."""
    if connection.vendor != "postgresql":
        DatasetEntry.objects.bulk_create(
            [DatasetEntry(**_entry_values(version.pk, i, e)) for i, e in enumerate(entries)],
            batch_size=1000,
        )
        return
    table = DatasetEntry._meta.db_table
    columns = ", ".join(_ENTRY_COLUMNS)
    dump = _JsonCache()
    for start in range(0, len(entries), 20000):
        buffer = io.StringIO()
        buffer.writelines(
            _copy_line(version.pk, position, entry, dump)
            for position, entry in enumerate(entries[start : start + 20000], start=start)
        )
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)


@transaction.atomic
def dataset_version_build(
    *, rule: DatasetRule, built_by: AbstractBaseUser | None = None
) -> tuple[DatasetVersion, bool]:
    """Run the rule and store what it selects as a new immutable draft version.

    Returns (version, created). When a live (draft or published) version of the rule has the
    same manifest checksum, that version is returned and nothing is stored. The rule row is
    locked for the build, so two builds of one rule number their versions one after the other.
    Everything happens in one transaction: a build that fails (a rule that selects nothing, a
    question gone from a campaign, an unreadable file) leaves no version and no rows.
    """
    rule = DatasetRule.objects.select_for_update().get(pk=rule.pk)
    spec = rule_spec_check(values=rule_values(rule))
    selection = curation.select(spec, store_fingerprints=True)
    if not selection.entries:
        last = next((s for s in reversed(selection.stages) if s.dropped), None)
        reason = (
            f"'{last.label}' dropped the last {last.dropped} candidate(s)."
            if last
            else "its sources hold no candidates."
        )
        raise ValidationError({"rule": [f"The rule selects nothing: {reason}"]})
    checksum = manifest_checksum(purpose=spec.purpose, kind=spec.kind, entries=selection.entries)
    existing = (
        DatasetVersion.objects.filter(rule=rule, manifest_sha256=checksum)
        .exclude(status=VersionStatus.RETIRED)
        .first()
    )
    if existing is not None:
        return existing, False
    number = (rule.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    train = sum(1 for e in selection.entries if e.split == "train")
    snapshot = {
        **spec.snapshot(),
        "rule_id": rule.pk,
        "name": rule.name,
        "training_trigger": rule.training_trigger,
    }
    version = DatasetVersion.objects.create(
        rule=rule,
        number=number,
        purpose=spec.purpose,
        kind=spec.kind,
        rule_snapshot=snapshot,
        stage_counts=[vars(s) for s in selection.stages],
        manifest_sha256=checksum,
        entry_count=len(selection.entries),
        train_count=train,
        validation_count=len(selection.entries) - train,
        built_by=built_by,
    )
    _insert_entries(version, selection.entries)
    _audit(
        AuditAction.BUILD,
        actor=built_by,
        version=version,
        details={
            "rule": rule.pk,
            "number": number,
            "entries": version.entry_count,
            "manifest_sha256": checksum,
        },
    )
    return version, True


@transaction.atomic
def dataset_version_publish(
    *, version: DatasetVersion, published_by: AbstractBaseUser | None = None
) -> DatasetVersion:
    """Publish a draft so training jobs can use it; start the rule's training trigger, if any.

    A trigger that cannot create its job (training side absent, or the job refused) does not
    undo the publish: it is recorded as pending or failed and can be fired again.
    """
    version = DatasetVersion.objects.select_for_update().select_related("rule").get(pk=version.pk)
    if version.status == VersionStatus.PUBLISHED:
        raise ServiceConflict(f"Version {version} is already published.")
    if version.status == VersionStatus.RETIRED:
        raise ServiceConflict(f"Version {version} is retired; a retired version stays retired.")
    version.status = VersionStatus.PUBLISHED
    version.published_at = timezone.now()
    version.published_by = published_by
    version.save(update_fields=["status", "published_at", "published_by"])
    _audit(
        AuditAction.PUBLISH,
        actor=published_by,
        version=version,
        details={"manifest_sha256": version.manifest_sha256},
    )
    if version.rule.training_trigger:
        trigger = TrainingTrigger.objects.create(
            version=version, trigger=version.rule.training_trigger, requested_by=published_by
        )
        _trigger_fire(trigger)
    return version


@transaction.atomic
def dataset_version_retire(
    *, version: DatasetVersion, retired_by: AbstractBaseUser | None = None
) -> DatasetVersion:
    """Retire a version: no new exports or training from it. Its rows stay as they are."""
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.status == VersionStatus.RETIRED:
        raise ServiceConflict(f"Version {version.pk} is already retired.")
    version.status = VersionStatus.RETIRED
    version.retired_at = timezone.now()
    version.retired_by = retired_by
    version.save(update_fields=["status", "retired_at", "retired_by"])
    _audit(AuditAction.RETIRE, actor=retired_by, version=version)
    return version


# Training triggers -------------------------------------------------------------------------------


def _training_service():
    """The training side's ``training_job_create_from_trigger``, or None while it is absent."""
    try:
        module = importlib.import_module("training_bridge.jobs.services")
    except ImportError:
        return None
    return getattr(module, "training_job_create_from_trigger", None)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def _trigger_fire(trigger: TrainingTrigger) -> TrainingTrigger:
    """Create the training job of a locked pending (or failed) trigger.

    Assumes the caller holds the trigger row (or just created it) inside a transaction. The job
    creation runs in a savepoint, so a refused job leaves the caller's work intact.
    """
    create = _training_service()
    actor = trigger.requested_by
    if create is None:
        trigger.status = TriggerStatus.PENDING
        trigger.save(update_fields=["status"])
        _audit(
            AuditAction.TRIGGER_PENDING,
            actor=actor,
            version=trigger.version,
            details={"trigger": trigger.trigger},
        )
        return trigger
    try:
        with transaction.atomic():
            job = create(
                dataset_version=trigger.version, trigger=dict(trigger.trigger), requested_by=actor
            )
    except (ValidationError, ServiceConflict, ValueError) as exc:
        trigger.status = TriggerStatus.FAILED
        trigger.error = _error_text(exc)
        trigger.save(update_fields=["status", "error"])
        _audit(
            AuditAction.TRIGGER_FAILED,
            actor=actor,
            version=trigger.version,
            details={"trigger": trigger.trigger, "error": trigger.error},
        )
        return trigger
    trigger.status = TriggerStatus.FIRED
    trigger.job_id = job.pk
    trigger.error = ""
    trigger.fired_at = timezone.now()
    trigger.save(update_fields=["status", "job_id", "error", "fired_at"])
    _audit(
        AuditAction.TRIGGER_FIRED,
        actor=actor,
        version=trigger.version,
        details={"trigger": trigger.trigger, "job_id": job.pk},
    )
    return trigger


@transaction.atomic
def training_trigger_fire(*, trigger: TrainingTrigger) -> TrainingTrigger:
    """Fire a pending or failed trigger again (after the training side landed, or a fix)."""
    trigger = (
        TrainingTrigger.objects.select_for_update().select_related("version").get(pk=trigger.pk)
    )
    if trigger.status == TriggerStatus.FIRED:
        raise ServiceConflict(f"The trigger of version {trigger.version_id} has fired already.")
    if trigger.version.status != VersionStatus.PUBLISHED:
        raise ServiceConflict(f"Version {trigger.version_id} is {trigger.version.status}.")
    return _trigger_fire(trigger)


def training_triggers_fire_pending() -> int:
    """Fire every pending trigger once the training service exists; the number fired.

    Each trigger is taken with ``skip_locked`` in its own transaction, so concurrent callers
    (the periodic task, a publish) never fire one twice.
    """
    if _training_service() is None:
        return 0
    fired = 0
    while True:
        with transaction.atomic():
            trigger = (
                TrainingTrigger.objects.select_for_update(skip_locked=True)
                .select_related("version")
                .filter(status=TriggerStatus.PENDING, version__status=VersionStatus.PUBLISHED)
                .order_by("pk")
                .first()
            )
            if trigger is None:
                return fired
            _trigger_fire(trigger)
            fired += trigger.status == TriggerStatus.FIRED
            if trigger.status == TriggerStatus.PENDING:
                return fired


# Exports -----------------------------------------------------------------------------------------


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


def _export_row(
    *,
    version: DatasetVersion,
    export_format: str,
    shard_size: int | None,
    requested_by: AbstractBaseUser | None,
) -> DatasetExport:
    """Check and store a queued export (caller holds a transaction)."""
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
    _audit(
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
        _export_row(
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


@transaction.atomic
def _export_claim(export_id: int, part: int) -> DatasetExport | None:
    """Mark the export running for ``part``; None when the export has ended or the part is
    done. A part found running is a redelivery after its worker died: it runs again and
    overwrites its own keys."""
    export = DatasetExport.objects.select_for_update().select_related("version").get(pk=export_id)
    if export.status in TERMINAL_TASK_STATUSES or str(part) in export.part_results:
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
    export.status = TaskStatus.RUNNING
    export.started_at = export.started_at or timezone.now()
    export.attempts = F("attempts") + 1
    export.save(update_fields=["status", "started_at", "attempts"])
    export.refresh_from_db(fields=["attempts"])
    return export


@transaction.atomic
def _export_finish_part(
    export_id: int, *, part: int, files: list[dict], cpu_seconds: float
) -> bool:
    """Record a finished part; the last part to finish finishes the export. False when the
    export ended meanwhile (another part failed): the caller's files are not part of it."""
    export = DatasetExport.objects.select_for_update().select_related("version").get(pk=export_id)
    if export.status in TERMINAL_TASK_STATUSES:
        return False
    export.part_results[str(part)] = {"files": files, "cpu_seconds": cpu_seconds}
    export.save(update_fields=["part_results"])
    if len(export.part_results) < export.parts:
        return True
    results = export.part_results.values()
    _export_finish_locked(
        export,
        status=TaskStatus.SUCCEEDED,
        files=sorted((f for r in results for f in r["files"]), key=lambda f: f["name"]),
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
    export.status = status
    export.error = error
    export.finished_at = timezone.now()
    fields = ["status", "error", "finished_at"]
    if status == TaskStatus.FAILED and export.part_results:
        # Parts that finished before another failed stored files that no export owns now.
        transaction.on_commit(partial(_delete_keys, _part_keys(export.part_results)))
        export.part_results = {}
        fields.append("part_results")
    if files is not None:
        export.files = files
        export.size_bytes = sum(f["size"] for f in files)
        export.sha256 = combined_sha256(
            [
                OutputFile(name=f["name"], path=Path(), size=f["size"], sha256=f["sha256"])
                for f in files
            ]
        )
        export.done = export.total
        fields += ["files", "size_bytes", "sha256", "done"]
    export.save(update_fields=fields)
    action = (
        AuditAction.EXPORT_SUCCEEDED
        if status == TaskStatus.SUCCEEDED
        else AuditAction.EXPORT_FAILED
    )
    _audit(
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


def _part_keys(part_results: dict) -> list[str]:
    return [f["key"] for result in part_results.values() for f in result["files"]]


def _delete_keys(keys: list[str]) -> None:
    for key in keys:
        default_storage.delete(key)


@transaction.atomic
def _export_finish(
    export_id: int,
    *,
    status: str,
    error: str = "",
    files: list[dict] | None = None,
    cpu_seconds: float | None = None,
) -> None:
    export = DatasetExport.objects.select_for_update().select_related("version").get(pk=export_id)
    if export.status in TERMINAL_TASK_STATUSES:
        return
    _export_finish_locked(export, status=status, error=error, files=files, cpu_seconds=cpu_seconds)


class ExportInputError(Exception):
    """A stored file is missing or no longer matches its manifest checksum."""


_READ_SIZE = 1 << 16


class _StorageReader:
    """Reads stored files: straight from disk when storage is a local folder, else through the
    storage API. ``os.open``/``os.read`` take about 7 µs for a small sticker where
    ``Storage.open(...).read()`` takes about 40 µs; at 100,000 files a format that is most of
    an export's time."""

    def __init__(self):
        try:
            root = default_storage.path("")
        except NotImplementedError:
            root = None
        # Opening relative to the media folder's descriptor spares the kernel the walk down
        # from / on every one of 100,000 files.
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if root else None

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def read(self, key: str) -> bytes:
        try:
            if self._root_fd is None:
                with default_storage.open(key, "rb") as fh:
                    return fh.read()
            fd = os.open(key, os.O_RDONLY, dir_fd=self._root_fd)
            try:
                data = os.read(fd, _READ_SIZE)
                if len(data) == _READ_SIZE:
                    parts = [data]
                    while chunk := os.read(fd, 1 << 20):
                        parts.append(chunk)
                    data = b"".join(parts)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            raise ExportInputError(f"The stored file {key} cannot be read ({exc}).") from exc


def dataset_info(version: DatasetVersion) -> dict:
    """``dataset.json``: what the training side checks before it trains."""
    return {
        "dataset_version_id": version.pk,
        "purpose": version.purpose,
        "kind": version.kind,
        "manifest_sha256": version.manifest_sha256,
        "entry_count": version.entry_count,
        "rule": version.rule_snapshot.get("name"),
        "number": version.number,
        "train_count": version.train_count,
        "validation_count": version.validation_count,
    }


_RECORD_COLUMNS = (
    "candidate_id",
    "split",
    "file_key",
    "file_sha256",
    "file_ext",
    "caption",
    "label",
    "confidence",
    "labels",
    "confidences",
    "scores",
    "n_judgments",
    "model_version_name",
    "seed",
    "prompt_text",
    "teacher",
    "source_candidate_id",
    "source_file_key",
    "frames_prefix",
    "frame_count",
    "motion_score",
)
# Blank names go out as JSON null; the database turns them into NULL on the way.
_BLANK_AS_NULL = {"model_version_name", "teacher"}
EXPORT_READ_CHUNK = 5000


def _manifest_chunks(version: DatasetVersion, start: int, stop: int) -> Iterator[list[tuple]]:
    """The manifest in order, ``EXPORT_READ_CHUNK`` rows per query by position range.

    Raw SQL with the JSON columns as text: they are written out as they are, and Django's
    JSONField would decode each of them (about 5 µs a row). Short range queries hold no cursor
    or transaction open for the length of an export.
    """
    cast = "::text" if connection.vendor == "postgresql" else ""
    columns = ", ".join(
        f"COALESCE({c}{cast}, 'null')"
        if c in _JSON_COLUMNS
        else f"NULLIF({c}, '')"
        if c in _BLANK_AS_NULL
        else c
        for c in _RECORD_COLUMNS
    )
    sql = (
        f"SELECT {columns} FROM {DatasetEntry._meta.db_table} "
        "WHERE version_id = %s AND position >= %s AND position < %s ORDER BY position"
    )
    for first in range(start, stop, EXPORT_READ_CHUNK):
        with connection.cursor() as cursor:
            cursor.execute(sql, [version.pk, first, min(stop, first + EXPORT_READ_CHUNK)])
            rows = cursor.fetchall()
        if rows:
            yield rows


EXPORT_BATCH_BYTES = 32 << 20


def export_batches(
    version: DatasetVersion, reader: _StorageReader, start: int = 0, stop: int | None = None
) -> Iterator[ExportBatch]:
    """The version's entries (manifest positions [start, stop)) in manifest order with their
    bytes, a batch at a time.

    A batch holds at most ``EXPORT_READ_CHUNK`` entries and stops growing once its files pass
    ``EXPORT_BATCH_BYTES``, so memory stays bounded for large animations too. Each file is
    checked against the sha256 the manifest recorded; a changed or missing file stops the
    export rather than exporting something other than the version.
    """
    stop = version.entry_count if stop is None else stop
    for rows in _manifest_chunks(version, start, stop):
        (
            candidate_ids,
            splits,
            file_keys,
            file_sha256s,
            file_exts,
            captions,
            labels,
            confidences,
            labels_all,
            confidences_all,
            scores,
            n_judgments,
            model_versions,
            seeds,
            prompts,
            teachers,
            source_ids,
            source_keys,
            frames_prefixes,
            frame_counts,
            motion_scores,
        ) = zip(*rows, strict=True)
        extras = any(source_keys) or any(frames_prefixes)
        start = 0
        while start < len(rows):
            datas, sources, frames = _read_files(
                reader,
                start,
                file_keys,
                source_ids,
                source_keys,
                frames_prefixes,
                frame_counts,
                extras=extras,
            )
            end = start + len(datas)
            part = slice(start, end)
            digests = [hashlib.sha256(data).hexdigest() for data in datas]
            if digests != list(file_sha256s[part]):
                i = next(i for i, d in enumerate(digests) if d != file_sha256s[start + i])
                raise ExportInputError(
                    f"Candidate {candidate_ids[start + i]}'s file {file_keys[start + i]} no "
                    "longer matches the checksum in the manifest."
                )
            yield ExportBatch(
                candidate_id=candidate_ids[part],
                split=splits[part],
                ext=file_exts[part],
                sha256=file_sha256s[part],
                caption=captions[part],
                label_json=labels[part],
                confidence=confidences[part],
                labels_json=labels_all[part],
                confidences_json=confidences_all[part],
                scores_json=scores[part],
                n_judgments=n_judgments[part],
                model_version=model_versions[part],
                seed=seeds[part],
                prompt=prompts[part],
                teacher=teachers[part],
                motion_score=motion_scores[part],
                frame_count=frame_counts[part],
                data=datas,
                source_candidate_id=[
                    sid if data is not None else None
                    for sid, data in zip(source_ids[part], sources, strict=True)
                ],
                source_data=sources,
                frames=frames,
            )
            start = end


def _read_files(reader, start, file_keys, source_ids, source_keys, prefixes, counts, *, extras):
    """Files from entry ``start`` on until the batch's byte budget is spent: (files, sources,
    frame lists)."""
    read = reader.read
    datas: list[bytes] = []
    sources: list[bytes | None] = []
    frames: list[list[bytes]] = []
    total = 0
    for i in range(start, len(file_keys)):
        data = read(file_keys[i])
        datas.append(data)
        total += len(data)
        if extras:
            source = None
            if source_ids[i] is not None and source_keys[i]:
                source = read(source_keys[i])
                total += len(source)
            sources.append(source)
            prefix = prefixes[i]
            entry_frames = (
                [read(f"{prefix}frame-{k:03d}.png") for k in range(counts[i])] if prefix else []
            )
            total += sum(map(len, entry_frames))
            frames.append(entry_frames)
        if total >= EXPORT_BATCH_BYTES:
            break
    if not extras:
        sources = [None] * len(datas)
        frames = [[]] * len(datas)
    return datas, sources, frames


def _writer_for(export: DatasetExport, folder: Path, part: int, first_shard: dict[str, int]):
    version = export.version
    info = dataset_info(version)
    # Archive members carry the version's build time, so re-exports are byte-identical.
    mtime = int(version.created_at.timestamp())
    if export.format == ExportFormat.WEBDATASET:
        return WebDatasetWriter(
            folder, shard_size=export.shard_size, mtime=mtime, first_shard=first_shard
        )
    name = export_file_name(export.format, part, export.parts)
    if export.format == ExportFormat.IMAGEFOLDER:
        return ImagefolderWriter(
            folder / name,
            dataset_info=info,
            mtime=mtime,
            folder=f"{part:05d}" if export.parts > 1 else "",
        )
    return ParquetWriter(folder / name, dataset_info=info)


def export_file_name(export_format: str, part: int, parts: int) -> str:
    """``imagefolder.tar`` / ``manifest.parquet``, or ``imagefolder-00001-of-00002.tar`` ...
    for the parts of a many-part export (the Hugging Face Hub's naming of parquet shards)."""
    name = EXPORT_FILE_NAMES[export_format]
    if parts == 1:
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}-{part:05d}-of-{parts:05d}{dot}{ext}"


def _first_shards(version: DatasetVersion, shard_size: int, parts: int, part: int) -> dict:
    """The index of ``part``'s first WebDataset shard in each split: every earlier part starts
    its own shards, so this counts theirs (one query over the earlier ranges)."""
    if part == 0:
        return {}
    size = export_part_range(version.entry_count, parts, 1)[0]
    rows = (
        DatasetEntry.objects.filter(version=version, position__lt=part * size)
        .annotate(part=F("position") / size)
        .values_list("split", "part")
        .annotate(n=Count("id"))
    )
    first: dict[str, int] = {}
    for split, _, count in rows:
        first[split] = first.get(split, 0) + -(-count // shard_size)
    return first


class _MovableFile(File):
    """A finished local file that a local storage may move into place instead of copying."""

    def temporary_file_path(self) -> str:
        return self.name


def _store_outputs(export: DatasetExport, outputs: list[OutputFile]) -> list[dict]:
    stored = []
    for output in outputs:
        key = f"{export.storage_prefix}{output.name}"
        with open(output.path, "rb") as fh:
            saved = default_storage.save(key, _MovableFile(fh, name=str(output.path)))
        if saved != key:
            raise ExportInputError(f"Storage wrote {saved} instead of {key}.")
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


def _exports_write(claimed, version, parts: int, part: int, start: int, stop: int) -> None:
    """Write ``part`` of each claimed export and settle it (see ``dataset_exports_run``)."""
    cpu_started = time.process_time()
    scratch = work_dir() / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    folders: dict[int, Path] = {}
    writers: dict[int, object] = {}
    failed: dict[int, str] = {}
    outputs: dict[int, list[OutputFile]] = {}
    reader = _StorageReader()
    try:
        for export in claimed:
            folders[export.pk] = Path(
                tempfile.mkdtemp(prefix=f"export-{export.pk}-{part}-", dir=scratch)
            )
            first_shard = (
                _first_shards(version, export.shard_size, parts, part)
                if export.format == ExportFormat.WEBDATASET
                else {}
            )
            try:
                writers[export.pk] = _writer_for(export, folders[export.pk], part, first_shard)
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
                _delete_keys([f["key"] for f in files])
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


@transaction.atomic
def dataset_export_download_record(
    *, export: DatasetExport, user: AbstractBaseUser, file_name: str | None
) -> dict:
    """Check that a file of the export may be downloaded and log who took it; the file's entry.

    The caller has checked the user's role. ``file_name`` may be omitted for single-file exports.
    """
    export = DatasetExport.objects.select_related("version").get(pk=export.pk)
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
    _audit(
        AuditAction.DOWNLOAD,
        actor=user,
        version=export.version,
        export=export,
        details={"file": entry["name"], "sha256": entry["sha256"], "size": entry["size"]},
    )
    return entry


# Weak corpora ------------------------------------------------------------------------------------


@transaction.atomic
def weak_source_create(
    *,
    name: str,
    kind: str,
    description: str = "",
    motion_bucket_edges: list | None = None,
    created_by: AbstractBaseUser | None = None,
) -> WeakSource:
    edges = list(motion_bucket_edges or [])
    errors = {}
    if kind not in DatasetKind.values:
        errors["kind"] = [f"Unknown kind {kind!r}; use image or animation."]
    if edges and kind != DatasetKind.ANIMATION:
        errors["motion_bucket_edges"] = ["Only animation sources have motion buckets."]
    elif not all(
        isinstance(e, int | float) and not isinstance(e, bool) and 0 < e <= 1 for e in edges
    ):
        errors["motion_bucket_edges"] = ["Edges must be numbers in (0, 1]."]
    elif any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        errors["motion_bucket_edges"] = ["Edges must be strictly ascending."]
    if WeakSource.objects.filter(name=name).exists():
        errors["name"] = [f"A weak source named {name!r} exists already."]
    if errors:
        raise ValidationError(errors)
    source = WeakSource(
        name=name,
        kind=kind,
        description=description,
        motion_bucket_edges=[float(e) for e in edges],
        created_by=created_by,
    )
    source.full_clean()
    source.save()
    return source


def _check_container(upload: UploadedFile, file_format: str) -> None:
    import tarfile

    upload.seek(0)
    if file_format == ImportFormat.TAR:
        try:
            with tarfile.open(fileobj=upload, mode="r:*") as archive:
                archive.next()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValidationError(
                {"file": [f"The upload is not a readable tar archive ({exc})."]}
            ) from exc
    elif file_format == ImportFormat.PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pq.ParquetFile(upload)
        except (pa.ArrowException, OSError) as exc:
            raise ValidationError({"file": ["The upload is not a Parquet file."]}) from exc
    upload.seek(0)


@transaction.atomic
def weak_import_create(
    *,
    source: WeakSource,
    file_format: str,
    upload: UploadedFile | None = None,
    folder: str | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> WeakImport:
    """Queue an import of a tar or Parquet upload, or of a folder under ``WEAK_IMPORT_ROOT``."""
    if file_format not in ImportFormat.values:
        raise ValidationError(
            {"format": [f"Unknown format {file_format!r}; use folder, tar or parquet."]}
        )
    if file_format == ImportFormat.FOLDER:
        if upload is not None or not folder:
            raise ValidationError({"folder": ["A folder import names a folder on the server."]})
        root = weak_import_root().resolve()
        path = (root / folder).resolve()
        if not path.is_relative_to(root):
            raise ValidationError({"folder": [f"The folder must lie under {root}."]})
        if not path.is_dir():
            raise ValidationError({"folder": [f"No folder {folder!r} under {root}."]})
        location, original = str(path), folder
    else:
        if upload is None or folder:
            raise ValidationError({"file": [f"A {file_format} import takes an uploaded file."]})
        _check_container(upload, file_format)
        original = os.path.basename(upload.name or f"corpus.{file_format}")
        key = f"weak-imports/{uuid.uuid4().hex}/{original}"
        location = default_storage.save(key, upload)
    weak_import = WeakImport.objects.create(
        source=source,
        file_format=file_format,
        location=location,
        original_name=original,
        requested_by=requested_by,
    )
    curation_tasks.run_weak_import.delay_on_commit(weak_import.pk)
    return weak_import


@transaction.atomic
def _import_claim(import_id: int) -> WeakImport | None:
    weak_import = WeakImport.objects.select_for_update().select_related("source").get(pk=import_id)
    if weak_import.is_finished:
        return None
    weak_import.status = TaskStatus.RUNNING
    weak_import.started_at = timezone.now()
    # A redelivered run starts its counts again; candidates it made before stay (and are not
    # made twice: they are found by content hash).
    weak_import.processed = weak_import.duplicates = weak_import.failed = 0
    weak_import.errors = []
    weak_import.imported = Candidate.objects.filter(
        import_source=weak_import.source.name, params__import_id=weak_import.pk
    ).count()
    weak_import.save()
    return weak_import


def _import_key(source: WeakSource, sha: str, ext: str) -> str:
    return f"imports/{source.pk}/{sha[:2]}/{sha}.{ext}"


def _import_batch(weak_import: WeakImport, batch: list) -> None:
    """Decode, store and insert one batch of records; count what happened."""
    from training_bridge.weak import WeakFileError, WeakRowError, motion_bucket, prepare_file

    source = weak_import.source
    errors, prepared = [], {}
    for record in batch:
        if isinstance(record, WeakRowError):
            errors.append({"file": record.name, "error": record.error})
            continue
        try:
            ready = prepare_file(record.data, kind=source.kind, name=record.name)
        except WeakFileError as exc:
            errors.append({"file": record.name, "error": str(exc)})
            continue
        prepared.setdefault(sha256_hex(ready.data), (record, ready))
    with transaction.atomic():
        # One importer at a time per source: the content-hash check and the insert must not
        # interleave with another import's.
        WeakSource.objects.select_for_update().get(pk=source.pk)
        existing = dict(
            Candidate.objects.filter(
                origin=CandidateOrigin.IMPORTED,
                import_source=source.name,
                sha256__in=list(prepared),
            ).values_list("sha256", "params__import_id")
        )
        duplicates = sum(
            1 for sha in prepared if sha in existing and existing[sha] != weak_import.pk
        )
        duplicates += len(batch) - len(errors) - len(prepared)
        new_rows, fingerprints = [], []
        for sha, (record, ready) in prepared.items():
            if sha in existing:
                continue
            key = _import_key(source, sha, ready.ext)
            frames_prefix = ""
            if ready.frames:
                frames_prefix = key.rsplit(".", 1)[0] + "/"
                for index, frame in enumerate(ready.frames):
                    default_storage.save(
                        f"{frames_prefix}frame-{index:03d}.png", ContentFile(frame)
                    )
            default_storage.save(key, ContentFile(ready.data))
            labels = dict(record.labels)
            if ready.motion_score is not None:
                labels["motion_bucket"] = motion_bucket(
                    ready.motion_score, source.motion_bucket_edges
                )
            new_rows.append(
                Candidate(
                    kind=CandidateKind.ANIMATION if ready.frames else CandidateKind.STICKER,
                    origin=CandidateOrigin.IMPORTED,
                    params={"import_id": weak_import.pk, "file": record.name, "fps": ready.fps},
                    raw_prompt=record.caption,
                    file=key,
                    frames_prefix=frames_prefix,
                    width=ready.width,
                    height=ready.height,
                    frame_count=ready.frame_count,
                    file_size=len(ready.data),
                    sha256=sha,
                    motion_score=ready.motion_score,
                    weak_labels=labels,
                    import_source=source.name,
                )
            )
            fingerprints.append(perceptual_hash(ready.first_frame))
        created = Candidate.objects.bulk_create(new_rows)
        CandidateFingerprint.objects.bulk_create(
            [
                CandidateFingerprint(candidate_id=c.pk, phash=h)
                for c, h in zip(created, fingerprints, strict=True)
            ],
            ignore_conflicts=True,
        )
        WeakSource.objects.filter(pk=source.pk).update(
            candidate_count=F("candidate_count") + len(created)
        )
        weak_import.refresh_from_db(fields=["errors"])
        reported = (weak_import.errors + errors)[:MAX_REPORTED_ERRORS]
        WeakImport.objects.filter(pk=weak_import.pk).update(
            processed=F("processed") + len(batch),
            imported=F("imported") + len(created),
            duplicates=F("duplicates") + duplicates,
            failed=F("failed") + len(errors),
            errors=reported,
        )


def _local_corpus(weak_import: WeakImport) -> tuple[Path, Path | None]:
    """(path to read, temporary copy to delete): uploads are read from local storage directly
    or downloaded from a bucket into scratch space."""
    if weak_import.file_format == ImportFormat.FOLDER:
        return Path(weak_import.location), None
    try:
        return Path(default_storage.path(weak_import.location)), None
    except NotImplementedError:
        scratch = work_dir() / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=scratch, suffix=f".{weak_import.file_format}")
        with (
            os.fdopen(handle, "wb") as out,
            default_storage.open(weak_import.location, "rb") as src,
        ):
            shutil.copyfileobj(src, out, 1 << 20)
        return Path(name), Path(name)


def weak_import_fail(*, import_id: int, error: str) -> None:
    """Mark an import failed from outside its run (time limit, crash); what it imported stays."""
    WeakImport.objects.filter(pk=import_id).exclude(status__in=TERMINAL_TASK_STATUSES).update(
        status=TaskStatus.FAILED, error=error, finished_at=timezone.now()
    )


def weak_import_run(*, import_id: int) -> None:
    """Import a corpus: every readable file becomes a candidate of the source (RGBA PNG, or an
    animated WebP plus frames with its motion score and bucket); each bad file is reported and
    the rest imported. Idempotent: files are found again by content hash."""
    from training_bridge.weak import WeakCorpusError, read_corpus

    weak_import = _import_claim(import_id)
    if weak_import is None:
        return
    path, temporary = _local_corpus(weak_import)
    try:
        batch: list = []
        for record in read_corpus(path, file_format=weak_import.file_format):
            batch.append(record)
            if len(batch) >= IMPORT_BATCH:
                _import_batch(weak_import, batch)
                batch = []
        if batch:
            _import_batch(weak_import, batch)
    except WeakCorpusError as exc:
        WeakImport.objects.filter(pk=weak_import.pk).update(
            status=TaskStatus.FAILED, error=str(exc), finished_at=timezone.now()
        )
        return
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    WeakImport.objects.filter(pk=weak_import.pk).update(
        status=TaskStatus.SUCCEEDED, finished_at=timezone.now()
    )
