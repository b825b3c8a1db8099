"""Generation batches: validate and store a batch, split it into chunks, cancel it."""

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import islice

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation import pipelines
from generation import tasks as generation_tasks
from generation.model_store import model_folder_local
from generation.models import (
    TERMINAL_BATCH_STATUSES,
    BatchKind,
    BatchStatus,
    Candidate,
    CandidateKind,
    EnhancerKind,
    GenerationBatch,
    GenerationChunk,
    ModelKind,
    ModelVersion,
    Prompt,
    PromptEnhancer,
    PromptSet,
)
from generation.params import GenerationParams, validate_params
from generation.services.enhancers import template_enhancer
from stickerloop import events
from stickerloop.errors import ServiceConflict
from stickerloop.ids import MAX_ID
from stickerloop.lifecycle import lock_unfinished

MAX_SEEDS = 64
MOTION_PROMPT_MAX_CHARS = 1000
# A first CSV row naming its columns is a header, not a sticker.
MOTION_PROMPT_HEADERS = {"sticker", "source", "candidate", "id", "sticker_id", "source_id"}
MAX_SEED = 2**32 - 1
BATCH_KIND_TO_MODEL_KIND = {
    BatchKind.STICKER: ModelKind.IMAGE,
    BatchKind.ANIMATION: ModelKind.ANIMATION,
}


class EnhancerChoice(Enum):
    """A batch that names no enhancer applies its prompt set's (``PromptSet.enhancer``)."""

    PROMPT_SET = "prompt_set"


def batched(items, size: int):
    """``itertools.batched`` arrived in Python 3.12; the project runs on 3.11."""
    iterator = iter(items)
    while group := tuple(islice(iterator, size)):
        yield group


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


def _texts_read(prompts: list[Prompt], enhancer: PromptEnhancer | None) -> list[str] | None:
    """The text each prompt's model reads: the template enhancer's output, else the prompt's
    imported enhanced text or the prompt. None for a text-generation enhancer, whose output is
    known only once the worker has run it (the pipeline cuts what runs over the limit)."""
    if enhancer is None:
        return [p.enhanced_text or p.text for p in prompts]
    if enhancer.kind == EnhancerKind.TEMPLATE:
        return template_enhancer(enhancer).enhance([p.text for p in prompts])
    return None


def _check_prompt_tokens(
    prompts: list[Prompt], texts: list[str], model_versions: list[ModelVersion], how: str
) -> list[str]:
    """Prompts whose ``texts`` are over a model's token limit, counted with that model's own
    tokenizer; ``how`` says where the texts came from."""
    problems = []
    for mv in model_versions:
        if not mv.max_prompt_tokens:
            continue
        try:
            counts = pipelines.prompt_token_count(model_folder_local(mv.uri, weights=False), texts)
        except Exception:
            # An unreadable folder is not the request's fault: the worker fails the batch
            # with the folder's name instead.
            continue
        over = [p for p, n in zip(prompts, counts, strict=True) if n > mv.max_prompt_tokens]
        if over:
            problems.append(
                f"{len(over)} prompt(s) exceed the {mv.max_prompt_tokens}-token limit of "
                f"{mv.name}{how}, e.g. prompt {over[0].pk} ({over[0].text[:40]!r})."
            )
    return problems


@dataclass(frozen=True)
class MotionPrompt:
    """One source sticker's motion prompt, with where it was read (``line 3`` of a CSV,
    ``item 1`` of a list), which every error about it names."""

    source: int
    text: str
    where: str


def motion_prompts_parse(*, content: str) -> list[MotionPrompt]:
    """Read ``sticker id,motion prompt`` rows, one a line; blank lines are skipped and a first
    row whose first cell names the column (``sticker``, ``source``, ``id``…) is a header.

    A prompt may hold commas unquoted: the cells after the id are joined back with commas.
    Raises ValidationError keyed ``motion_prompts`` naming every bad line; whether each id is a
    sticker is the batch's check (``generation_batch_create``).
    """
    rows: list[MotionPrompt] = []
    problems: list[str] = []
    for number, cells in enumerate(csv.reader(content.splitlines()), start=1):
        if not cells or not "".join(cells).strip():
            continue
        first = cells[0].strip()
        if number == 1 and first.lower() in MOTION_PROMPT_HEADERS:
            continue
        where = f"Line {number}"
        # ASCII digits: str.isdigit also takes superscripts, which int() refuses.
        if not (first.isascii() and first.isdigit()):
            problems.append(f"{where}: the first column must be a sticker id, not {first!r}.")
            continue
        text = ",".join(cells[1:]).strip()
        if not text:
            problems.append(f"{where}: give a motion prompt after sticker {first}.")
            continue
        rows.append(MotionPrompt(source=int(first), text=text, where=where))
    if problems:
        raise ValidationError({"motion_prompts": problems})
    return rows


def _motion_prompt_ids(motion_prompts: Sequence[MotionPrompt]) -> list[int]:
    return [m.source for m in motion_prompts if 0 < m.source <= MAX_ID]


def _check_motion_prompts(
    motion_prompts: Sequence[MotionPrompt], sources: list[Candidate]
) -> list[str]:
    """Each motion prompt names an existing sticker among ``sources``, once, with text."""
    kinds = dict(
        Candidate.objects.filter(pk__in=_motion_prompt_ids(motion_prompts)).values_list(
            "pk", "kind"
        )
    )
    source_ids = {c.pk for c in sources}
    first_seen: dict[int, str] = {}
    problems = []
    for m in motion_prompts:
        if m.source not in kinds:
            problems.append(f"{m.where}: candidate {m.source} does not exist.")
        elif kinds[m.source] != CandidateKind.STICKER:
            problems.append(
                f"{m.where}: candidate {m.source} is an {kinds[m.source]}, not a sticker."
            )
        elif m.source in first_seen:
            problems.append(
                f"{m.where}: sticker {m.source} already has a motion prompt "
                f"({first_seen[m.source].lower()})."
            )
        elif m.source not in source_ids:
            problems.append(f"{m.where}: sticker {m.source} is not among the batch's sources.")
        elif not m.text.strip():
            problems.append(f"{m.where}: the motion prompt is empty.")
        elif "\x00" in m.text:
            problems.append(f"{m.where}: the motion prompt holds a NUL character.")
        elif len(m.text) > MOTION_PROMPT_MAX_CHARS:
            problems.append(
                f"{m.where}: the motion prompt is over {MOTION_PROMPT_MAX_CHARS} characters."
            )
        first_seen.setdefault(m.source, m.where)
    return problems


def _check_enhancer(enhancer: PromptEnhancer | None, kind: str) -> list[str]:
    if enhancer is not None and kind != BatchKind.STICKER:
        return ["An enhancer rewrites the prompts of a sticker batch; animations have none."]
    return []


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
    enhancer: PromptEnhancer | EnhancerChoice | None = EnhancerChoice.PROMPT_SET,
    motion_prompts: Sequence[MotionPrompt] = (),
) -> GenerationBatch:
    """Validate and store a batch, then plan it on the ``default`` queue after commit.

    ``enhancer``: the prompt enhancer a sticker batch applies (None: none); by default its
    prompt set's. The batch keeps the one chosen, so later changes to the set do not reach it.

    ``motion_prompts``: an animation batch's own prompt per source sticker; the others take
    ``params["motion_prompt"]``, else their sticker's prompt. An animation batch given motion
    prompts and no ``sources`` animates the stickers they name.
    """
    errors: dict[str, list[str]] = {}
    if kind not in BatchKind.values:
        raise ValidationError({"kind": [f"Unknown batch kind {kind!r}: use sticker or animation."]})
    if enhancer is EnhancerChoice.PROMPT_SET:
        enhancer = prompt_set.enhancer if kind == BatchKind.STICKER and prompt_set else None
    if problems := _check_enhancer(enhancer, kind):
        errors["enhancer"] = problems
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
            elif "model_versions" not in errors and "enhancer" not in errors:
                texts = _texts_read(prompts, enhancer)
                how = f" once enhanced by {enhancer.name}" if enhancer else ""
                if texts is not None and (
                    problems := _check_prompt_tokens(prompts, texts, model_versions, how)
                ):
                    # What the model reads is the enhancer's output: a shorter template fixes it.
                    errors["enhancer" if enhancer else "prompt_set"] = problems
        if motion_prompts:
            errors["motion_prompts"] = ["Only an animation batch has motion prompts."]
    else:
        source_list = list(sources or [])
        if not source_list and motion_prompts:
            source_list = list(
                Candidate.objects.filter(
                    pk__in=_motion_prompt_ids(motion_prompts), kind=CandidateKind.STICKER
                ).order_by("pk")
            )
        if not source_list:
            errors["sources"] = ["An animation batch needs at least one source sticker."]
        not_stickers = [c.pk for c in source_list if c.kind != CandidateKind.STICKER]
        if not_stickers:
            errors["sources"] = [
                f"Candidate(s) {', '.join(map(str, not_stickers))} are not sticker candidates."
            ]
        if problems := _check_motion_prompts(motion_prompts, source_list):
            errors["motion_prompts"] = problems
    if errors:
        raise ValidationError(errors)
    per_model = len(prompts) if kind == BatchKind.STICKER else len(source_list)
    batch = GenerationBatch(
        name=name,
        kind=kind,
        prompt_set=prompt_set if kind == BatchKind.STICKER else None,
        enhancer=enhancer,
        seeds=list(seeds),
        params=resolved.as_dict(),
        motion_prompts={str(m.source): m.text for m in motion_prompts},
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
    batch = lock_unfinished(GenerationBatch.objects, batch_id, finished=TERMINAL_BATCH_STATUSES)
    if batch is None or batch.chunks_total:
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
    batch_announce_end(batch)
    return batch


def batch_announce_end(batch: GenerationBatch) -> None:
    """Announce (after commit) that ``batch`` has ended: ``batch.failed`` when every chunk
    failed, else ``batch.finished`` with the status it ended in (succeeded, partial, cancelled).
    Assumes the caller holds the batch row locked and has just moved it to a terminal status."""
    name = events.BATCH_FAILED if batch.status == BatchStatus.FAILED else events.BATCH_FINISHED
    events.publish(
        name,
        object_type="generation_batch",
        object_id=batch.pk,
        data={
            "status": batch.status,
            "done_count": batch.done_count,
            "failed_count": batch.failed_count,
        },
    )
