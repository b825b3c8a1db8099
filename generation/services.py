"""Generation writes: model versions, prompt sets, batches, chunks and candidates."""

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from generation import tasks as generation_tasks
from generation.models import (
    PROMPT_MAX_CHARS,
    TERMINAL_CHUNK_STATUSES,
    BatchKind,
    BatchStatus,
    Candidate,
    CandidateKind,
    ChunkStatus,
    GenerationBatch,
    GenerationChunk,
    ModelKind,
    ModelRole,
    ModelVersion,
    Prompt,
    PromptSet,
    Tag,
)
from generation.params import GenerationParams, validate_params
from generation.pipelines import (
    ModelLoadError,
    encode_animated_webp,
    encode_png,
    generate_animations,
    generate_stickers,
    model_prompt_token_limit,
    prompt_token_count,
    sha256_hex,
)
from stickerloop.api import ServiceConflict
from stickerloop.input_checks import NUL_MESSAGE, InputProblem, json_loads_checked

logger = logging.getLogger(__name__)

MAX_SEEDS = 64
MAX_SEED = 2**32 - 1
BATCH_KIND_TO_MODEL_KIND = {
    BatchKind.STICKER: ModelKind.IMAGE,
    BatchKind.ANIMATION: ModelKind.ANIMATION,
}


def batched(items, size: int):
    """``itertools.batched`` arrived in Python 3.12; the project runs on 3.11."""
    iterator = iter(items)
    while group := tuple(islice(iterator, size)):
        yield group


# Model versions ----------------------------------------------------------------------------------


def _local_folder(uri: str) -> Path | None:
    """The local folder ``uri`` names, or None for a bucket path or hub id."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    path = Path(uri.removeprefix("file://"))
    if path.is_absolute() or uri.startswith("."):
        return path
    return None


@transaction.atomic
def model_version_register(
    *,
    name: str,
    kind: str,
    uri: str,
    role: str = ModelRole.BASE,
    default_params: dict | None = None,
    parent: ModelVersion | None = None,
    description: str = "",
    provenance: dict | None = None,
    created_by: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Register a diffusers model. A local folder must hold a ``model_index.json``."""
    errors: dict[str, list[str]] = {}
    folder = _local_folder(uri)
    max_tokens = None
    if folder is not None:
        if not (folder / "model_index.json").is_file():
            errors["uri"] = [f"No diffusers model at {folder}: model_index.json is missing."]
        else:
            try:
                max_tokens = model_prompt_token_limit(str(folder))
            except Exception:
                # A model without a CLIP tokenizer has no token limit we can check here.
                max_tokens = None
    if parent is not None and parent.kind != kind:
        errors["parent"] = [f"The parent is an {parent.kind} model, not {kind}."]
    if errors:
        raise ValidationError(errors)
    version = ModelVersion(
        name=name,
        kind=kind,
        role=role,
        uri=str(folder) if folder is not None else uri,
        default_params=default_params or {},
        parent=parent,
        description=description,
        provenance=provenance or {},
        max_prompt_tokens=max_tokens,
        created_by=created_by,
    )
    version.full_clean()
    version.save()
    return version


# Prompt sets -------------------------------------------------------------------------------------


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


# Batches -----------------------------------------------------------------------------------------


def _check_seeds(seeds: list) -> list[str]:
    if not isinstance(seeds, list) or not seeds:
        return ["Give at least one seed."]
    if len(seeds) > MAX_SEEDS:
        return [f"At most {MAX_SEEDS} seeds per batch, not {len(seeds)}."]
    if not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds
    ):
        return [f"Seeds must be integers from 0 to {MAX_SEED}."]
    if len(set(seeds)) != len(seeds):
        return ["Seeds must not repeat."]
    return []


def _check_model_versions(model_versions: list[ModelVersion], kind: str) -> list[str]:
    if not model_versions:
        return ["Choose at least one model version."]
    wanted = BATCH_KIND_TO_MODEL_KIND[kind]
    wrong = [mv.name for mv in model_versions if mv.kind != wanted]
    if wrong:
        return [f"Model version(s) {', '.join(wrong)} are not {wanted} models."]
    inactive = [mv.name for mv in model_versions if not mv.is_active]
    if inactive:
        return [f"Model version(s) {', '.join(inactive)} are retired."]
    return []


def _check_prompt_tokens(prompts: list[Prompt], model_versions: list[ModelVersion]) -> list[str]:
    """Prompts over a model's token limit, checked with that model's own tokenizer."""
    problems = []
    for mv in model_versions:
        if not mv.max_prompt_tokens:
            continue
        try:
            counts = prompt_token_count(mv.uri, [p.text for p in prompts])
        except Exception:
            # An unreadable folder is not the request's fault: the worker fails the batch
            # with the folder's name instead.
            continue
        over = [p for p, n in zip(prompts, counts, strict=True) if n > mv.max_prompt_tokens]
        if over:
            problems.append(
                f"{len(over)} prompt(s) exceed the {mv.max_prompt_tokens}-token limit of "
                f"{mv.name}, e.g. prompt {over[0].pk} ({over[0].text[:40]!r})."
            )
    return problems


@transaction.atomic
def generation_batch_create(
    *,
    kind: str,
    model_versions: list[ModelVersion],
    seeds: list[int],
    params: dict,
    requested_by: AbstractBaseUser | None = None,
    prompt_set: PromptSet | None = None,
    sources: list[Candidate] | None = None,
    name: str = "",
) -> GenerationBatch:
    """Validate and store a batch, then plan it on the ``default`` queue after commit."""
    errors: dict[str, list[str]] = {}
    if kind not in BatchKind.values:
        raise ValidationError({"kind": [f"Unknown batch kind {kind!r}: use sticker or animation."]})
    if problems := _check_model_versions(model_versions, kind):
        errors["model_versions"] = problems
    if problems := _check_seeds(seeds):
        errors["seeds"] = problems
    defaults = model_versions[0].default_params if model_versions else {}
    resolved: GenerationParams | None = None
    try:
        resolved = validate_params(params, kind=kind, defaults=defaults)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    prompts: list[Prompt] = []
    source_list: list[Candidate] = []
    if kind == BatchKind.STICKER:
        if prompt_set is None:
            errors["prompt_set"] = ["A sticker batch needs a prompt set."]
        else:
            prompts = list(prompt_set.prompts.order_by("position"))
            if not prompts:
                errors["prompt_set"] = [f"Prompt set {prompt_set.name!r} is empty."]
            elif "model_versions" not in errors and (
                problems := _check_prompt_tokens(prompts, model_versions)
            ):
                errors["prompt_set"] = problems
    else:
        source_list = list(sources or [])
        if not source_list:
            errors["sources"] = ["An animation batch needs at least one source sticker."]
        not_stickers = [c.pk for c in source_list if c.kind != CandidateKind.STICKER]
        if not_stickers:
            errors["sources"] = [
                f"Candidate(s) {', '.join(map(str, not_stickers))} are not sticker candidates."
            ]
    if errors:
        raise ValidationError(errors)
    per_model = len(prompts) if kind == BatchKind.STICKER else len(source_list)
    batch = GenerationBatch(
        name=name,
        kind=kind,
        prompt_set=prompt_set if kind == BatchKind.STICKER else None,
        seeds=list(seeds),
        params=resolved.as_dict(),
        total=per_model * len(model_versions) * len(seeds),
        requested_by=requested_by,
    )
    batch.full_clean()
    batch.save()
    batch.model_versions.set(model_versions)
    if source_list:
        batch.sources.set(source_list)
    generation_tasks.plan_batch.delay_on_commit(batch.pk)
    return batch


def _chunk_specs(batch: GenerationBatch) -> list[tuple[int, list[dict]]]:
    """(model version id, items) per chunk, in a deterministic order."""
    if batch.kind == BatchKind.STICKER:
        keys = [
            ("prompt", pk)
            for pk in batch.prompt_set.prompts.order_by("position").values_list("pk", flat=True)
        ]
    else:
        keys = [("source", pk) for pk in batch.sources.order_by("pk").values_list("pk", flat=True)]
    specs = []
    for mv_id in batch.model_versions.order_by("pk").values_list("pk", flat=True):
        items = [{name: pk, "seed": seed} for name, pk in keys for seed in batch.seeds]
        for part in batched(items, settings.GENERATION_CHUNK_SIZE):
            specs.append((mv_id, list(part)))
    return specs


@transaction.atomic
def generation_batch_plan(*, batch_id: int) -> list[int]:
    """Split a batch into chunks and queue them; a second call queues nothing new.

    Returns the ids of the chunks queued by this call.
    """
    batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
    if batch.chunks_total or batch.is_finished:
        return []
    specs = _chunk_specs(batch)
    chunks = GenerationChunk.objects.bulk_create(
        [
            GenerationChunk(batch=batch, index=i, model_version_id=mv_id, items=items)
            for i, (mv_id, items) in enumerate(specs)
        ]
    )
    batch.chunks_total = len(chunks)
    batch.save(update_fields=["chunks_total"])
    for chunk in chunks:
        generation_tasks.run_chunk.delay_on_commit(chunk.pk)
    return [c.pk for c in chunks]


@transaction.atomic
def generation_batch_cancel(*, batch: GenerationBatch) -> GenerationBatch:
    """Cancel a batch. Queued chunks end as cancelled when their task runs; a running chunk stops
    after its current pipeline call. Candidates already stored are kept."""
    batch = GenerationBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.is_finished:
        raise ServiceConflict(f"Batch {batch.pk} has already ended ({batch.status}).")
    batch.status = BatchStatus.CANCELLED
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "finished_at"])
    return batch


# Chunks ------------------------------------------------------------------------------------------


def _item_key(kind: str, item: dict) -> tuple[int, int]:
    return (item["prompt"] if kind == BatchKind.STICKER else item["source"], item["seed"])


def _stored_keys(chunk: GenerationChunk) -> set[tuple[int, int]]:
    field_name = "prompt_id" if chunk.batch.kind == BatchKind.STICKER else "source_id"
    return set(
        Candidate.objects.filter(
            batch_id=chunk.batch_id, model_version_id=chunk.model_version_id
        ).values_list(field_name, "seed")
    )


@transaction.atomic
def _chunk_claim(chunk_id: int) -> GenerationChunk | None:
    """Mark the chunk running and the batch started; None when there is nothing to do.

    Lock order is chunk, then batch (as in ``_chunk_finish``). A chunk found RUNNING is a
    redelivery after its worker died: it runs again, and the unique candidate key makes that safe.
    """
    chunk = (
        GenerationChunk.objects.select_for_update()
        .select_related("batch", "model_version")
        .get(pk=chunk_id)
    )
    if chunk.status in TERMINAL_CHUNK_STATUSES:
        return None
    batch = GenerationBatch.objects.select_for_update().get(pk=chunk.batch_id)
    if batch.status == BatchStatus.CANCELLED:
        return chunk
    now = timezone.now()
    chunk.status = ChunkStatus.RUNNING
    chunk.attempts = F("attempts") + 1
    chunk.started_at = now
    chunk.save(update_fields=["status", "attempts", "started_at"])
    if batch.status == BatchStatus.QUEUED:
        batch.status = BatchStatus.RUNNING
        batch.started_at = now
        batch.save(update_fields=["status", "started_at"])
    chunk.refresh_from_db(fields=["attempts"])
    chunk.batch = batch
    return chunk


@transaction.atomic
def _chunk_finish(*, chunk_id: int, status: str, error: str = "") -> None:
    """Move a chunk to a terminal state once and settle the batch when it was the last one."""
    chunk = GenerationChunk.objects.select_for_update().select_related("batch").get(pk=chunk_id)
    if chunk.status in TERMINAL_CHUNK_STATUSES:
        return
    missing = 0
    if status != ChunkStatus.SUCCEEDED:
        stored = _stored_keys(chunk)
        missing = sum(1 for item in chunk.items if _item_key(chunk.batch.kind, item) not in stored)
    chunk.status = status
    chunk.error = error
    chunk.finished_at = timezone.now()
    chunk.save(update_fields=["status", "error", "finished_at"])
    batch = GenerationBatch.objects.select_for_update().get(pk=chunk.batch_id)
    batch.chunks_finished += 1
    if status == ChunkStatus.FAILED:
        batch.failed_count += missing
        if not batch.error:
            batch.error = f"chunk {chunk.index}: {error}"
    update = ["chunks_finished", "failed_count", "error"]
    if batch.chunks_finished == batch.chunks_total and batch.status != BatchStatus.CANCELLED:
        failed = batch.chunks.filter(status=ChunkStatus.FAILED).count()
        if failed == 0:
            batch.status = BatchStatus.SUCCEEDED
        elif failed == batch.chunks_total:
            batch.status = BatchStatus.FAILED
        else:
            batch.status = BatchStatus.PARTIAL
        batch.finished_at = timezone.now()
        update += ["status", "finished_at"]
    batch.save(update_fields=update)


def _batch_cancelled(batch_id: int) -> bool:
    return GenerationBatch.objects.filter(pk=batch_id, status=BatchStatus.CANCELLED).exists()


def candidate_file_key(
    *, batch_id: int, model_version_id: int, key: tuple[int, int], ext: str
) -> str:
    """Deterministic storage key: a re-run writes the same key instead of a second file."""
    return f"candidates/{batch_id}/{model_version_id}/{key[0]}-{key[1]}.{ext}"


@transaction.atomic
def _store_candidates(*, batch_id: int, candidates: list[Candidate]) -> int:
    """Insert one pipeline call's candidates, skipping keys already stored, and set the batch's
    done count; return how many candidates the batch now holds.

    One INSERT for the group (ON CONFLICT DO NOTHING on the unique candidate key) instead of a
    get-or-create per candidate: measured on the tiny models, the per-row round trips were a
    third of the platform's overhead over the bare pipeline. The count is taken after locking
    the batch row in the inserting transaction, so a redelivered chunk racing the original
    (the insert waits on the other's uncommitted rows) still ends with the exact number.
    """
    Candidate.objects.bulk_create(candidates, ignore_conflicts=True)
    GenerationBatch.objects.select_for_update().filter(pk=batch_id).values_list("pk").get()
    stored = Candidate.objects.filter(batch_id=batch_id).count()
    GenerationBatch.objects.filter(pk=batch_id).update(done_count=stored)
    return stored


def _run_sticker_group(chunk: GenerationChunk, loaded, items: list[dict]) -> list[Candidate]:
    params = chunk.batch.params
    prompts = {p.pk: p for p in Prompt.objects.filter(pk__in=[i["prompt"] for i in items])}
    texts = [prompts[i["prompt"]].enhanced_text or prompts[i["prompt"]].text for i in items]
    results = generate_stickers(
        loaded,
        prompts=texts,
        seeds=[i["seed"] for i in items],
        num_inference_steps=params["num_inference_steps"],
        guidance_scale=params["guidance_scale"],
        width=params["width"],
        height=params["height"],
        negative_prompt=params.get("negative_prompt") or None,
    )
    rows = []
    for item, result in zip(items, results, strict=True):
        data = encode_png(result.image)
        key = candidate_file_key(
            batch_id=chunk.batch_id,
            model_version_id=chunk.model_version_id,
            key=_item_key(BatchKind.STICKER, item),
            ext="png",
        )
        default_storage.save(key, ContentFile(data))
        prompt = prompts[item["prompt"]]
        rows.append(
            Candidate(
                batch_id=chunk.batch_id,
                prompt_id=prompt.pk,
                model_version_id=chunk.model_version_id,
                seed=item["seed"],
                kind=CandidateKind.STICKER,
                params={
                    **params,
                    "alpha_source": result.alpha_source,
                    "pipeline": loaded.class_name,
                    "dtype": str(loaded.dtype),
                },
                raw_prompt=prompt.text,
                enhanced_prompt=prompt.enhanced_text,
                file=key,
                width=result.image.width,
                height=result.image.height,
                frame_count=1,
                file_size=len(data),
                sha256=sha256_hex(data),
                device=loaded.device,
                inference_ms=result.inference_ms,
            )
        )
    return rows


def _run_animation_group(chunk: GenerationChunk, loaded, items: list[dict]) -> list[Candidate]:
    from PIL import Image

    params = chunk.batch.params
    sources = {c.pk: c for c in Candidate.objects.filter(pk__in=[i["source"] for i in items])}
    images = {}
    for pk, source in sources.items():
        with default_storage.open(source.file, "rb") as fh:
            images[pk] = Image.open(fh).convert("RGBA")
    motion_prompt = params.get("motion_prompt") or ""
    texts = [motion_prompt or sources[i["source"]].raw_prompt for i in items]
    results = generate_animations(
        loaded,
        source_images=[images[i["source"]] for i in items],
        prompts=texts,
        seeds=[i["seed"] for i in items],
        num_frames=params["num_frames"],
        num_inference_steps=params["num_inference_steps"],
        guidance_scale=params["guidance_scale"],
        width=params["width"],
        height=params["height"],
        strength=params["strength"],
    )
    rows = []
    for item, text, result in zip(items, texts, results, strict=True):
        item_key = _item_key(BatchKind.ANIMATION, item)
        data = encode_animated_webp(result.frames, fps=params["fps"])
        key = candidate_file_key(
            batch_id=chunk.batch_id,
            model_version_id=chunk.model_version_id,
            key=item_key,
            ext="webp",
        )
        frames_prefix = key.removesuffix(".webp") + "/"
        for index, frame in enumerate(result.frames):
            default_storage.save(
                f"{frames_prefix}frame-{index:03d}.png", ContentFile(encode_png(frame))
            )
        default_storage.save(key, ContentFile(data))
        source = sources[item["source"]]
        rows.append(
            Candidate(
                batch_id=chunk.batch_id,
                source_id=source.pk,
                model_version_id=chunk.model_version_id,
                seed=item["seed"],
                kind=CandidateKind.ANIMATION,
                prompt_id=source.prompt_id,
                params={**params, "pipeline": loaded.class_name, "dtype": str(loaded.dtype)},
                raw_prompt=source.raw_prompt,
                enhanced_prompt=source.enhanced_prompt,
                motion_prompt=text,
                file=key,
                frames_prefix=frames_prefix,
                width=result.frames[0].width,
                height=result.frames[0].height,
                frame_count=len(result.frames),
                file_size=len(data),
                sha256=sha256_hex(data),
                device=loaded.device,
                inference_ms=result.inference_ms,
                motion_score=result.motion_score,
            )
        )
    return rows


def generation_chunk_run(*, chunk_id: int) -> None:
    """Generate what a chunk still lacks, store it, and settle the chunk.

    Idempotent: keys already stored are skipped, files go to deterministic keys and rows are
    unique on (batch, prompt or source, model version, seed), so a redelivered chunk fills holes
    and duplicates nothing. A missing or corrupt model folder fails the chunk with the reason.
    """
    from generation import runtime

    chunk = _chunk_claim(chunk_id)
    if chunk is None:
        return
    if chunk.batch.status == BatchStatus.CANCELLED:
        _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.CANCELLED)
        return
    try:
        loaded = runtime.pipeline_for(chunk.model_version)
    except ModelLoadError as exc:
        _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.FAILED, error=str(exc))
        return
    stored = _stored_keys(chunk)
    todo = [i for i in chunk.items if _item_key(chunk.batch.kind, i) not in stored]
    run_group = (
        _run_sticker_group if chunk.batch.kind == BatchKind.STICKER else _run_animation_group
    )
    for group in batched(todo, settings.GENERATION_BATCH_SIZE):
        if _batch_cancelled(chunk.batch_id):
            _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.CANCELLED)
            return
        started = time.perf_counter()
        try:
            rows = run_group(chunk, loaded, list(group))
        except (ValueError, RuntimeError, OSError) as exc:
            logger.exception("chunk %s failed", chunk_id)
            _chunk_finish(
                chunk_id=chunk_id, status=ChunkStatus.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
            return
        stored = _store_candidates(batch_id=chunk.batch_id, candidates=rows)
        logger.info(
            "chunk %s: %d candidates in %.3f s (batch holds %d)",
            chunk_id,
            len(rows),
            time.perf_counter() - started,
            stored,
        )
    _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.SUCCEEDED)


def default_models_register(*, root: Path) -> list[ModelVersion]:
    """Build the tiny offline models under ``root`` if missing and register them by name.

    Idempotent: existing folders are reused and existing versions are pointed at them.
    """
    from generation.pipelines import build_default_models

    versions = []
    for spec in build_default_models(root):
        existing = ModelVersion.objects.filter(name=spec["name"]).first()
        if existing is not None:
            if existing.uri != spec["uri"]:
                existing.uri = spec["uri"]
                existing.save(update_fields=["uri"])
            versions.append(existing)
            continue
        versions.append(
            model_version_register(
                name=spec["name"],
                kind=spec["kind"],
                role=spec["role"],
                uri=spec["uri"],
                default_params=spec["default_params"],
                description=spec.get("description", "Tiny model built offline from configuration."),
            )
        )
    return versions
