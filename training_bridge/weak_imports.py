"""Weak corpora: sources and the imports that bring their files in as candidates."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from generation.models import Candidate, CandidateKind, CandidateOrigin, frame_key
from generation.pipelines import sha256_hex
from generation.services.candidates import ImportedCandidate, candidates_import
from stickerloop.lifecycle import lock_unfinished, mark_running
from training_bridge import tasks as curation_tasks
from training_bridge.exports.create import work_dir
from training_bridge.models import (
    TERMINAL_TASK_STATUSES,
    CandidateFingerprint,
    DatasetKind,
    ImportFormat,
    TaskStatus,
    WeakImport,
    WeakSource,
)
from training_bridge.neardup import perceptual_hash

MAX_REPORTED_ERRORS = 1000
IMPORT_BATCH = 64


def weak_import_root() -> Path:
    """The server folder that folder imports must lie under (``WEAK_IMPORT_ROOT``)."""
    configured = getattr(settings, "WEAK_IMPORT_ROOT", None)
    return Path(configured) if configured else Path(settings.VAR_DIR) / "imports"


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


def _size_words(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:g} GiB"
    return f"{size / 2**20:g} MiB"


def weak_upload_size_check(size: int) -> None:
    """Refuse a tar or Parquet upload over WEAK_IMPORT_MAX_BYTES (callers check the upload's
    size before reading it)."""
    limit = settings.WEAK_IMPORT_MAX_BYTES
    if size > limit:
        raise ValidationError(
            {
                "file": [
                    f"A weak-corpus upload may have at most {_size_words(limit)} ({limit:,} bytes)."
                ]
            }
        )


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
        weak_upload_size_check(upload.size)
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
    weak_import = lock_unfinished(
        WeakImport.objects.select_related("source"), import_id, finished=TERMINAL_TASK_STATUSES
    )
    if weak_import is None:
        return None
    # A redelivered run starts its counts again; candidates it made before stay (and are not
    # made twice: they are found by content hash).
    imported = Candidate.objects.filter(
        import_source=weak_import.source.name, params__import_id=weak_import.pk
    ).count()
    mark_running(
        weak_import,
        fields={"processed": 0, "duplicates": 0, "failed": 0, "errors": [], "imported": imported},
    )
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
                    default_storage.save(frame_key(frames_prefix, index), ContentFile(frame))
            default_storage.save(key, ContentFile(ready.data))
            labels = dict(record.labels)
            if ready.motion_score is not None:
                labels["motion_bucket"] = motion_bucket(
                    ready.motion_score, source.motion_bucket_edges
                )
            new_rows.append(
                ImportedCandidate(
                    kind=CandidateKind.ANIMATION if ready.frames else CandidateKind.STICKER,
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
                )
            )
            fingerprints.append(perceptual_hash(ready.first_frame))
        # Every row is new under the source lock, so ``created`` lines up with ``fingerprints``.
        created = candidates_import(source=source.name, rows=new_rows).created
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
