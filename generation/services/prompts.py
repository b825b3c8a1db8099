"""Prompt sets: import a text, CSV or JSONL file of prompts."""

import csv
import io
import json
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from generation.models import PROMPT_MAX_CHARS, Prompt, PromptSet, Tag
from stickerloop.input_checks import NUL_MESSAGE, InputProblem, json_loads_checked


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


def _lines_limited(lines, *, start: int):
    """(number, line) pairs, like enumerate; refuses a file over PROMPT_IMPORT_MAX_ROWS lines."""
    limit = settings.PROMPT_IMPORT_MAX_ROWS
    for count, line in enumerate(lines):
        if count == limit:
            raise ValidationError(
                {"file": [f"A prompt file may have at most {limit:,} lines (CSV: rows)."]}
            )
        yield start + count, line


def _parse_prompt_file(*, content: str, file_format: str) -> tuple[list[PromptRow], list[int]]:
    """Rows and the numbers of empty lines; raises ValidationError on a malformed file."""
    rows: list[PromptRow] = []
    empty: list[int] = []
    if file_format == "text":
        for number, line in _lines_limited(content.splitlines(), start=1):
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
        for number, record in _lines_limited(reader, start=2):
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
        for number, line in _lines_limited(content.splitlines(), start=1):
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
    """Create a prompt set from a text, CSV or JSONL file.

    Duplicates and empty lines are reported, not stored. A file with no prompt, or a prompt over
    the length limit, stores nothing.
    """
    prompt_file_size_check(len(content.encode("utf-8")))
    if "\x00" in content:
        line = content.count("\n", 0, content.index("\x00")) + 1
        raise ValidationError({"file": [f"Line {line}: {NUL_MESSAGE}"]})
    rows, empty = _parse_prompt_file(content=content, file_format=file_format)
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
    if PromptSet.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A prompt set named {name!r} exists already."]})
    prompt_set = PromptSet(
        name=name, description=description, is_held_out=is_held_out, created_by=created_by
    )
    prompt_set.full_clean()
    prompt_set.save()
    prompts = Prompt.objects.bulk_create(
        [
            Prompt(prompt_set=prompt_set, position=i, text=r.text, enhanced_text=r.enhanced_text)
            for i, r in enumerate(unique)
        ]
    )
    tag_names = sorted({t for r in unique for t in r.tags})
    if tag_names:
        Tag.objects.bulk_create([Tag(name=t) for t in tag_names], ignore_conflicts=True)
        tag_ids = dict(Tag.objects.filter(name__in=tag_names).values_list("name", "pk"))
        through = Prompt.tags.through
        through.objects.bulk_create(
            [
                through(prompt_id=p.pk, tag_id=tag_ids[t])
                for p, r in zip(prompts, unique, strict=True)
                for t in dict.fromkeys(r.tags)
            ]
        )
    return prompt_set, PromptImportReport(
        imported=len(unique),
        duplicates=duplicates,
        empty_lines=empty[:PROMPT_IMPORT_REPORT_LINES],
        duplicate_count=duplicate_count,
        empty_line_count=len(empty),
    )
