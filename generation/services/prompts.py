"""Prompt sets: import a text, CSV or JSONL file of prompts.

A file up to PROMPT_IMPORT_SYNC_BYTES is imported inside the request (``prompt_set_import``); a
larger one is stored and imported by a task (``prompt_import_create`` → ``prompt_import_run``),
whose ``PromptImport`` row carries its status, progress and report.
"""

import csv
import io
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from generation import tasks as generation_tasks
from generation.models import (
    PROMPT_MAX_CHARS,
    TERMINAL_PROMPT_IMPORT_STATUSES,
    Prompt,
    PromptFileFormat,
    PromptImport,
    PromptImportStatus,
    PromptSet,
    Tag,
)
from stickerloop.input_checks import NUL_MESSAGE, InputProblem, json_loads_checked
from stickerloop.lifecycle import claim, lock_unfinished, mark_finished

# A task's import records its progress every this many lines: one UPDATE per 10,000 lines.
PROGRESS_ROWS = 10_000
# Rows per INSERT: bounds each statement's size (100,000 prompts of 1,000 characters would be
# one 100 MB statement).
INSERT_BATCH = 5_000


@dataclass
class PromptRow:
    line: int
    text: str
    tags: list[str] = field(default_factory=list)
    enhanced_text: str = ""


@dataclass
class PromptImportReport:
    imported: int
    duplicates: list[dict]  # the first PROMPT_IMPORT_REPORT_LINES duplicates
    empty_lines: list[int]  # the first PROMPT_IMPORT_REPORT_LINES empty lines
    duplicate_count: int = 0
    empty_line_count: int = 0


# A report lists this many duplicates and empty lines, and counts the rest: listing them all
# answered an 18 MB file of duplicates with a 78 MB body.
PROMPT_IMPORT_REPORT_LINES = 100


def prompt_file_size_check(size: int) -> None:
    """Refuse a prompt file over PROMPT_IMPORT_MAX_BYTES (callers check before reading it)."""
    limit = settings.PROMPT_IMPORT_MAX_BYTES
    if size > limit:
        raise ValidationError(
            {"file": [f"A prompt file may have at most {limit / 2**20:g} MiB ({limit:,} bytes)."]}
        )


def _lines_limited(lines, *, start: int, progress: Callable[[int], None] | None = None):
    """(number, line) pairs, like enumerate; refuses a file over PROMPT_IMPORT_MAX_ROWS lines.
    ``progress`` is called with the count read every PROGRESS_ROWS lines and at the end."""
    limit = settings.PROMPT_IMPORT_MAX_ROWS
    count = 0
    for count, line in enumerate(lines, start=1):
        if count > limit:
            raise ValidationError(
                {"file": [f"A prompt file may have at most {limit:,} lines (CSV: rows)."]}
            )
        if progress is not None and count % PROGRESS_ROWS == 0:
            progress(count)
        yield start + count - 1, line
    if progress is not None:
        progress(count)


def _parse_prompt_file(
    *, content: str, file_format: str, progress: Callable[[int], None] | None = None
) -> tuple[list[PromptRow], list[int]]:
    """Rows and the numbers of empty lines; raises ValidationError on a malformed file."""
    rows: list[PromptRow] = []
    empty: list[int] = []
    if file_format == "text":
        for number, line in _lines_limited(content.splitlines(), start=1, progress=progress):
            if line.strip():
                rows.append(PromptRow(line=number, text=line.strip()))
            else:
                empty.append(number)
    elif file_format == "csv":
        reader = csv.DictReader(io.StringIO(content))
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise ValidationError(
                {"file": ["A CSV prompt file needs a header with a 'text' column."]}
            )
        for number, record in _lines_limited(reader, start=2, progress=progress):
            text = (record.get("text") or "").strip()
            if not text:
                empty.append(number)
                continue
            tags = [t.strip() for t in (record.get("tags") or "").replace("|", ";").split(";")]
            rows.append(
                PromptRow(
                    line=number,
                    text=text,
                    tags=[t for t in tags if t],
                    enhanced_text=(record.get("enhanced_text") or "").strip(),
                )
            )
    elif file_format == "jsonl":
        for number, line in _lines_limited(content.splitlines(), start=1, progress=progress):
            if not line.strip():
                empty.append(number)
                continue
            try:
                record = json_loads_checked(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    {"file": [f"Line {number} is not valid JSON: {exc.msg}."]}
                ) from exc
            except InputProblem as exc:
                raise ValidationError({"file": [f"Line {number}: {exc}"]}) from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValidationError({"file": [f"Line {number} needs a string 'text' field."]})
            tags = record.get("tags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ValidationError(
                    {"file": [f"Line {number}: 'tags' must be a list of strings."]}
                )
            text = record["text"].strip()
            if not text:
                empty.append(number)
                continue
            rows.append(
                PromptRow(
                    line=number,
                    text=text,
                    tags=[t.strip() for t in tags if t.strip()],
                    enhanced_text=str(record.get("enhanced_text") or "").strip(),
                )
            )
    else:
        raise ValidationError(
            {"format": [f"Unknown format {file_format!r}: use text, csv or jsonl."]}
        )
    return rows, empty


def _prompt_file_check(
    *, content: str, file_format: str, progress: Callable[[int], None] | None = None
) -> tuple[list[PromptRow], PromptImportReport]:
    """The file's unique prompts in order and its bounded report; raises ValidationError for a
    file that must store nothing (malformed, no prompt, a prompt or tag over its length)."""
    if "\x00" in content:
        line = content.count("\n", 0, content.index("\x00")) + 1
        raise ValidationError({"file": [f"Line {line}: {NUL_MESSAGE}"]})
    rows, empty = _parse_prompt_file(content=content, file_format=file_format, progress=progress)
    too_long = [r.line for r in rows if len(r.text) > PROMPT_MAX_CHARS]
    if too_long:
        raise ValidationError(
            {
                "file": [
                    f"Prompts may have at most {PROMPT_MAX_CHARS} characters; line(s) "
                    f"{', '.join(map(str, too_long[:10]))} are longer."
                ]
            }
        )
    tag_max = Tag._meta.get_field("name").max_length
    long_tags = [r.line for r in rows if any(len(t) > tag_max for t in r.tags)]
    if long_tags:
        raise ValidationError(
            {
                "tags": [
                    f"Tags may have at most {tag_max} characters; line(s) "
                    f"{', '.join(map(str, long_tags[:10]))} have longer ones."
                ]
            }
        )
    seen: dict[str, int] = {}
    unique: list[PromptRow] = []
    duplicates: list[dict] = []
    duplicate_count = 0
    for row in rows:
        if row.text in seen:
            duplicate_count += 1
            if len(duplicates) < PROMPT_IMPORT_REPORT_LINES:
                duplicates.append(
                    {"line": row.line, "first_line": seen[row.text], "text": row.text}
                )
            continue
        seen[row.text] = row.line
        unique.append(row)
    if not unique:
        raise ValidationError({"file": ["The file holds no prompts."]})
    return unique, PromptImportReport(
        imported=len(unique),
        duplicates=duplicates,
        empty_lines=empty[:PROMPT_IMPORT_REPORT_LINES],
        duplicate_count=duplicate_count,
        empty_line_count=len(empty),
    )


def _prompt_name_check(name: str) -> None:
    if PromptSet.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A prompt set named {name!r} exists already."]})


def _prompt_set_store(
    *,
    name: str,
    description: str,
    is_held_out: bool,
    created_by: AbstractBaseUser | None,
    rows: list[PromptRow],
) -> PromptSet:
    """Create the set with its prompts and tags. Assumes the rows passed ``_prompt_file_check``
    and an open transaction (a failure part-way stores nothing)."""
    _prompt_name_check(name)
    prompt_set = PromptSet(
        name=name, description=description, is_held_out=is_held_out, created_by=created_by
    )
    prompt_set.full_clean()
    prompt_set.save()
    prompts = Prompt.objects.bulk_create(
        [
            Prompt(prompt_set=prompt_set, position=i, text=r.text, enhanced_text=r.enhanced_text)
            for i, r in enumerate(rows)
        ],
        batch_size=INSERT_BATCH,
    )
    tag_names = sorted({t for r in rows for t in r.tags})
    if tag_names:
        Tag.objects.bulk_create(
            [Tag(name=t) for t in tag_names], ignore_conflicts=True, batch_size=INSERT_BATCH
        )
        tag_ids = dict(Tag.objects.filter(name__in=tag_names).values_list("name", "pk"))
        through = Prompt.tags.through
        through.objects.bulk_create(
            [
                through(prompt_id=p.pk, tag_id=tag_ids[t])
                for p, r in zip(prompts, rows, strict=True)
                for t in dict.fromkeys(r.tags)
            ],
            batch_size=INSERT_BATCH,
        )
    return prompt_set


def prompt_file_is_large(size: int) -> bool:
    """Whether a prompt file of ``size`` bytes is imported by a task rather than inside the
    request (over PROMPT_IMPORT_SYNC_BYTES)."""
    return size > settings.PROMPT_IMPORT_SYNC_BYTES


@transaction.atomic
def prompt_set_import(
    *,
    name: str,
    content: str,
    file_format: str,
    description: str = "",
    is_held_out: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> tuple[PromptSet, PromptImportReport]:
    """Create a prompt set from a text, CSV or JSONL file, here and now.

    Duplicates and empty lines are reported, not stored. A file with no prompt, or a prompt over
    the length limit, stores nothing. Callers send a file over PROMPT_IMPORT_SYNC_BYTES to
    ``prompt_import_create`` instead.
    """
    prompt_file_size_check(len(content.encode("utf-8")))
    rows, report = _prompt_file_check(content=content, file_format=file_format)
    prompt_set = _prompt_set_store(
        name=name,
        description=description,
        is_held_out=is_held_out,
        created_by=created_by,
        rows=rows,
    )
    return prompt_set, report


# Imports by a task ------------------------------------------------------------------------------


@transaction.atomic
def prompt_import_create(
    *,
    name: str,
    file: File,
    file_format: str,
    description: str = "",
    is_held_out: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> PromptImport:
    """Store an uploaded prompt file and queue its import (``generation.import_prompts``).

    Only what needs no parsing is checked here: the size, the format and the name (no prompt set
    and no import still under way has it). The rest is the task's, which ends FAILED with the
    reason.
    """
    prompt_file_size_check(file.size)
    if file_format not in PromptFileFormat.values:
        raise ValidationError(
            {"format": [f"Unknown format {file_format!r}: use text, csv or jsonl."]}
        )
    _prompt_name_check(name)
    if (
        PromptImport.objects.filter(name=name)
        .exclude(status__in=TERMINAL_PROMPT_IMPORT_STATUSES)
        .exists()
    ):
        raise ValidationError({"name": [f"A prompt set named {name!r} is being imported."]})
    prompt_import = PromptImport(
        name=name,
        description=description,
        is_held_out=is_held_out,
        file_format=file_format,
        original_name=os.path.basename(file.name or "")[:300],
        size_bytes=file.size,
        created_by=created_by,
    )
    prompt_import.full_clean(exclude=["location"])
    # A random key: the file's name is the caller's and need not be unique or safe.
    prompt_import.location = default_storage.save(f"imports/prompts/{uuid.uuid4().hex}", file)
    prompt_import.save()
    generation_tasks.import_prompts.delay_on_commit(prompt_import.pk)
    return prompt_import


def _upload_discard(location: str) -> None:
    if location:
        default_storage.delete(location)


def _read_upload(prompt_import: PromptImport) -> str:
    try:
        with default_storage.open(prompt_import.location, "rb") as handle:
            raw = handle.read(settings.PROMPT_IMPORT_MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise ValidationError({"file": ["The uploaded file is gone from storage."]}) from exc
    prompt_file_size_check(len(raw))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError({"file": ["The file is not UTF-8 text."]}) from exc


def _progress_recorder(import_id: int, content: str) -> Callable[[int], None]:
    """Records lines read and a percent (up to 90: storing is the last tenth), measured against
    the file's line count (a CSV row with a quoted line break reads as more than one line)."""
    lines = max(1, content.count("\n") + 1)

    def record(processed: int) -> None:
        PromptImport.objects.filter(pk=import_id).update(
            processed=processed, progress=min(90, 90 * processed // lines)
        )

    return record


def prompt_import_fail(*, import_id: int, error: str) -> None:
    """End an unfinished import FAILED with ``error`` and drop its upload; it stored nothing."""
    with transaction.atomic():
        prompt_import = lock_unfinished(
            PromptImport.objects.all(), import_id, finished=TERMINAL_PROMPT_IMPORT_STATUSES
        )
        if prompt_import is None:
            return
        mark_finished(prompt_import, status=PromptImportStatus.FAILED, error=error)
    _upload_discard(prompt_import.location)


def prompt_import_run(*, import_id: int) -> None:
    """Import a queued prompt file: read and check it (recording progress), then store the set
    and all its prompts and mark the import SUCCEEDED with its report, in one transaction.

    A bad file ends FAILED with the message and stores nothing. Idempotent: a finished import is
    a no-op, and a redelivered one starts over, since a run that did not commit stored nothing.
    """
    prompt_import = claim(
        PromptImport.objects.all(), import_id, finished=TERMINAL_PROMPT_IMPORT_STATUSES
    )
    if prompt_import is None:
        return
    PromptImport.objects.filter(pk=import_id).update(processed=0, progress=0)
    try:
        content = _read_upload(prompt_import)
        rows, report = _prompt_file_check(
            content=content,
            file_format=prompt_import.file_format,
            progress=_progress_recorder(import_id, content),
        )
        with transaction.atomic():
            # Locked again: two deliveries of one import may both get here; the second finds
            # it finished and stores nothing.
            prompt_import = lock_unfinished(
                PromptImport.objects.all(), import_id, finished=TERMINAL_PROMPT_IMPORT_STATUSES
            )
            if prompt_import is None:
                return
            prompt_set = _prompt_set_store(
                name=prompt_import.name,
                description=prompt_import.description,
                is_held_out=prompt_import.is_held_out,
                created_by=prompt_import.created_by,
                rows=rows,
            )
            mark_finished(
                prompt_import,
                status=PromptImportStatus.SUCCEEDED,
                fields={
                    "prompt_set": prompt_set,
                    "progress": 100,
                    "report": asdict(report),
                },
            )
    except ValidationError as exc:
        prompt_import_fail(import_id=import_id, error=" ".join(exc.messages))
        return
    _upload_discard(prompt_import.location)
