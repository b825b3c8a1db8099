"""Generation chunks: run one chunk of a batch on a worker and store its candidates."""

import logging
import time
from functools import partial

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

# generate_* through the lazy package (generation.pipelines): torch and diffusers load with the
# first chunk, not when a worker or the site imports the generation services.
from generation import pipelines
from generation.models import (
    TERMINAL_CHUNK_STATUSES,
    BatchKind,
    BatchStatus,
    Candidate,
    CandidateKind,
    ChunkStatus,
    GenerationBatch,
    GenerationChunk,
    Prompt,
    frame_key,
)
from generation.pipelines import (
    EnhancerLoadError,
    ModelLoadError,
    encode_animated_webp,
    encode_png,
    sha256_hex,
)
from generation.pipelines.enhancers import Enhancer
from generation.services.batches import batch_announce_end, batched
from generation.services.strips import frame_strip_store
from stickerloop.lifecycle import (
    heartbeat,
    heartbeat_fresh,
    lock_unfinished,
    mark_finished,
    mark_running,
)

logger = logging.getLogger(__name__)


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

    Lock order is chunk, then batch (as in ``_chunk_finish``). A chunk found RUNNING with a
    stale heartbeat is a redelivery after its worker died: it runs again, and the unique
    candidate key makes that safe. One found RUNNING with a fresh heartbeat has a live worker:
    this message is a duplicate (the sweep's, or the broker's after its visibility timeout), and
    if that worker dies later the sweep requeues the chunk.
    """
    chunk = lock_unfinished(
        GenerationChunk.objects.select_related("batch", "model_version"),
        chunk_id,
        finished=TERMINAL_CHUNK_STATUSES,
    )
    if chunk is None or heartbeat_fresh(chunk, stale_seconds=settings.SWEEP_STALE_SECONDS):
        return None
    batch = GenerationBatch.objects.select_for_update().get(pk=chunk.batch_id)
    if batch.status == BatchStatus.CANCELLED:
        return chunk
    now = timezone.now()
    mark_running(chunk, now=now, count_attempt=True, fields={"heartbeat_at": now})
    if batch.status == BatchStatus.QUEUED:
        mark_running(batch, now=now)
    chunk.batch = batch
    return chunk


@transaction.atomic
def _chunk_finish(*, chunk_id: int, status: str, error: str = "") -> None:
    """Move a chunk to a terminal state once and settle the batch when it was the last one."""
    chunk = lock_unfinished(
        GenerationChunk.objects.select_related("batch"), chunk_id, finished=TERMINAL_CHUNK_STATUSES
    )
    if chunk is None:
        return
    missing = 0
    if status != ChunkStatus.SUCCEEDED:
        stored = _stored_keys(chunk)
        missing = sum(1 for item in chunk.items if _item_key(chunk.batch.kind, item) not in stored)
    mark_finished(chunk, status=status, error=error)
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
        batch_announce_end(batch)
    batch.save(update_fields=update)


def _batch_cancelled(batch_id: int) -> bool:
    return GenerationBatch.objects.filter(pk=batch_id, status=BatchStatus.CANCELLED).exists()


def candidate_file_key(
    *, batch_id: int, model_version_id: int, key: tuple[int, int], ext: str
) -> str:
    """Deterministic storage key: a re-run writes the same key instead of a second file.

    The name is an HMAC of the candidate's identity (batch, model version, prompt or source,
    seed), so it says nothing about the model that made the file, yet a redelivered chunk
    overwrites its own files. Keyed by SECRET_KEY: a chunk re-run across a key rotation would
    write a second, unreferenced file (the candidate row stays unique and keeps the first).
    """
    identity = f"{batch_id}/{model_version_id}/{key[0]}-{key[1]}"
    name = salted_hmac("stickerloop.candidate_file_key", identity, algorithm="sha256").hexdigest()
    return f"candidates/{batch_id}/{name[:32]}.{ext}"


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


def _enhanced_texts(prompts: list[Prompt], enhancer: Enhancer | None) -> list[str]:
    """Each prompt's enhanced text: the batch's enhancer's output on the prompt as written
    (each distinct prompt once: a group holds one prompt under several seeds), else the
    enhanced text it was imported with, if any."""
    if enhancer is None:
        return [p.enhanced_text for p in prompts]
    distinct = list(dict.fromkeys(p.text for p in prompts))
    by_text = dict(zip(distinct, enhancer.enhance(distinct), strict=True))
    return [by_text[p.text] for p in prompts]


def _run_sticker_group(
    chunk: GenerationChunk, loaded, items: list[dict], *, enhancer: Enhancer | None = None
) -> list[Candidate]:
    params = chunk.batch.params
    prompts = {p.pk: p for p in Prompt.objects.filter(pk__in=[i["prompt"] for i in items])}
    enhanced = _enhanced_texts([prompts[i["prompt"]] for i in items], enhancer)
    # The enhanced prompts go into the same batched pipeline call as the raw ones would.
    texts = [e or prompts[i["prompt"]].text for i, e in zip(items, enhanced, strict=True)]
    results = pipelines.generate_stickers(
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
    for item, enhanced_prompt, result in zip(items, enhanced, results, strict=True):
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
                enhanced_prompt=enhanced_prompt,
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
    # A sticker's own motion prompt, else the batch's default, else the sticker's prompt.
    own = chunk.batch.motion_prompts
    default = params.get("motion_prompt") or ""
    texts = [own.get(str(i["source"])) or default or sources[i["source"]].raw_prompt for i in items]
    results = pipelines.generate_animations(
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
            default_storage.save(frame_key(frames_prefix, index), ContentFile(encode_png(frame)))
        frame_strip_store(frames_prefix=frames_prefix, frames=result.frames)
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
    While it generates, a thread stamps the chunk's heartbeat (``HEARTBEAT_SECONDS``).
    """
    chunk = _chunk_claim(chunk_id)
    if chunk is None:
        return
    if chunk.batch.status == BatchStatus.CANCELLED:
        _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.CANCELLED)
        return
    with heartbeat(GenerationChunk.objects.filter(pk=chunk_id)):
        _chunk_generate(chunk)


def _chunk_generate(chunk: GenerationChunk) -> None:
    """Generate a claimed chunk's missing candidates and settle it (see
    ``generation_chunk_run``)."""
    from generation import runtime

    chunk_id = chunk.pk
    try:
        loaded = runtime.pipeline_for(chunk.model_version)
    except ModelLoadError as exc:
        _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.FAILED, error=str(exc))
        return
    run_group = _run_animation_group
    if chunk.batch.kind == BatchKind.STICKER:
        enhancer = None
        if chunk.batch.enhancer_id is not None:
            try:
                enhancer = runtime.enhancer_for(chunk.batch.enhancer)
            except EnhancerLoadError as exc:
                _chunk_finish(chunk_id=chunk_id, status=ChunkStatus.FAILED, error=str(exc))
                return
        run_group = partial(_run_sticker_group, enhancer=enhancer)
    stored = _stored_keys(chunk)
    todo = [i for i in chunk.items if _item_key(chunk.batch.kind, i) not in stored]
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
