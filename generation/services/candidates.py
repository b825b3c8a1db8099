"""Candidates from outside a generation batch: the one way other apps create candidate rows.

Generation batches store their own candidates (``chunks``); the crowd import (annotation) and
the weak corpus import (training_bridge) call ``candidates_import``.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connection, transaction

from generation.models import Candidate, CandidateKind, CandidateOrigin, ModelKind, ModelVersion

MAX_REPORTED_ROWS = 5
IMPORT_BATCH_SIZE = 2000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODEL_KIND_OF = {
    CandidateKind.STICKER: ModelKind.IMAGE,
    CandidateKind.ANIMATION: ModelKind.ANIMATION,
}


@dataclass(frozen=True)
class ImportedCandidate:
    """One candidate to import: what the row stores, without its batch or origin.

    ``sha256`` (of the stored file) makes the row unique within its source: a second import of
    the same content finds the first row. Leave it empty where there is no file to hash (a crowd
    import knows only an item's name); such rows are always inserted.
    """

    kind: str
    raw_prompt: str
    width: int
    height: int
    file: str = ""
    sha256: str = ""
    frames_prefix: str = ""
    frame_count: int = 1
    file_size: int = 0
    motion_score: float | None = None
    params: dict = field(default_factory=dict)
    weak_labels: dict = field(default_factory=dict)
    model_version: ModelVersion | None = None


@dataclass(frozen=True)
class CandidateImport:
    """``candidates``: one per given row, in order: the row inserted now, or the row of the same
    source and ``sha256`` stored before. ``created``: those inserted now, in order."""

    candidates: list[Candidate]
    created: list[Candidate]


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _row_problems(index: int, row: ImportedCandidate) -> list[str]:
    problems = []
    if row.kind not in CandidateKind.values:
        problems.append(f"Row {index}: unknown kind {row.kind!r}; use sticker or animation.")
    if not isinstance(row.raw_prompt, str):
        problems.append(f"Row {index}: raw_prompt must be text.")
    if not (_is_count(row.width, 1) and _is_count(row.height, 1)):
        problems.append(
            f"Row {index}: width and height must be positive integers, not {row.width!r} and "
            f"{row.height!r}."
        )
    if not _is_count(row.frame_count, 1):
        problems.append(f"Row {index}: frame_count must be a positive integer.")
    if not _is_count(row.file_size, 0):
        problems.append(f"Row {index}: file_size must be a non-negative integer.")
    if not isinstance(row.sha256, str) or (row.sha256 and not _SHA256.fullmatch(row.sha256)):
        problems.append(
            f"Row {index}: sha256 must be 64 lowercase hexadecimal digits or empty, "
            f"not {str(row.sha256)[:70]!r}."
        )
    for name in ("file", "frames_prefix"):
        value = getattr(row, name)
        if not isinstance(value, str) or len(value) > 500:
            problems.append(f"Row {index}: {name} must be text of at most 500 characters.")
    if not isinstance(row.params, dict) or not isinstance(row.weak_labels, dict):
        problems.append(f"Row {index}: params and weak_labels must be objects.")
    version = row.model_version
    if version is not None:
        if version.pk is None:
            problems.append(f"Row {index}: model version {version.name!r} is not saved.")
        elif row.kind in _MODEL_KIND_OF and version.kind != _MODEL_KIND_OF[row.kind]:
            problems.append(
                f"Row {index}: model version {version.name} is an {version.kind} model; "
                f"a {row.kind} candidate needs an {_MODEL_KIND_OF[row.kind]} model."
            )
    return problems


def _check(source: str, rows: Sequence[ImportedCandidate]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not isinstance(source, str) or not source.strip():
        errors["source"] = ["Name the import source."]
    elif len(source) > 200:
        errors["source"] = [f"The source name has {len(source)} characters; at most 200."]
    problems: list[str] = []
    first_of: dict[str, int] = {}
    for index, row in enumerate(rows):
        problems += _row_problems(index, row)
        if row.sha256 and isinstance(row.sha256, str):
            if row.sha256 in first_of:
                problems.append(
                    f"Rows {first_of[row.sha256]} and {index} have the same sha256 "
                    f"{row.sha256[:12]}…; give each file once."
                )
            else:
                first_of[row.sha256] = index
    if problems:
        more = len(problems) - MAX_REPORTED_ROWS
        errors["rows"] = problems[:MAX_REPORTED_ROWS] + (
            [f"… and {more} more problem(s)."] if more > 0 else []
        )
    return errors


def _lock_source(source: str) -> None:
    """Serialise imports into one source until the transaction ends, so that what this call
    finds stored and what it inserts do not interleave with another call's (SQLite serialises
    writers anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"candidates_import:{source}"]
            )


def _stored(source: str, hashes: list[str]) -> dict[str, Candidate]:
    found = Candidate.objects.filter(
        origin=CandidateOrigin.IMPORTED, import_source=source, sha256__in=hashes
    )
    return {c.sha256: c for c in found}


@transaction.atomic
def candidates_import(*, source: str, rows: Sequence[ImportedCandidate]) -> CandidateImport:
    """Store imported candidates (origin ``imported``, no batch) under ``source``, in bulk.

    Idempotent per file: a row whose ``sha256`` the source already holds is not inserted again;
    its stored row is returned in its place. Rows are checked first and nothing is stored when
    one is invalid (ValidationError keyed ``source`` or ``rows``, rows numbered from 0). Files
    are the caller's: store them under deterministic keys before calling.

    The keyed rows go in as INSERT … ON CONFLICT DO NOTHING on ``candidate_unique_import_key``,
    so a writer that bypasses the lock below still cannot store a file twice.
    """
    if errors := _check(source, rows):
        raise ValidationError(errors)
    if not rows:
        return CandidateImport(candidates=[], created=[])
    hashes = [r.sha256 for r in rows if r.sha256]
    before: dict[str, Candidate] = {}
    if hashes:
        _lock_source(source)
        before = _stored(source, hashes)
    new = [
        Candidate(
            kind=r.kind,
            origin=CandidateOrigin.IMPORTED,
            model_version=r.model_version,
            raw_prompt=r.raw_prompt,
            file=r.file,
            frames_prefix=r.frames_prefix,
            width=r.width,
            height=r.height,
            frame_count=r.frame_count,
            file_size=r.file_size,
            sha256=r.sha256,
            motion_score=r.motion_score,
            params=r.params,
            weak_labels=r.weak_labels,
            import_source=source,
        )
        for r in rows
        if not (r.sha256 and r.sha256 in before)
    ]
    unkeyed = [c for c in new if not c.sha256]
    keyed = [c for c in new if c.sha256]
    # Without ignore_conflicts the ORM reads back the new ids; with it, it cannot (rows it
    # skipped return none), so the keyed rows are read back by their hash below.
    Candidate.objects.bulk_create(unkeyed, batch_size=IMPORT_BATCH_SIZE)
    inserted: dict[str, Candidate] = {}
    if keyed:
        Candidate.objects.bulk_create(keyed, batch_size=IMPORT_BATCH_SIZE, ignore_conflicts=True)
        inserted = _stored(source, [c.sha256 for c in keyed])
    unkeyed_iter = iter(unkeyed)
    candidates, created = [], []
    for row in rows:
        if not row.sha256:
            candidate = next(unkeyed_iter)
            created.append(candidate)
        elif row.sha256 in before:
            candidate = before[row.sha256]
        else:
            candidate = inserted[row.sha256]
            created.append(candidate)
        candidates.append(candidate)
    return CandidateImport(candidates=candidates, created=created)
