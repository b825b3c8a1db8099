"""A real Celery worker (subprocess) on real Redis and PostgreSQL runs the real tiny pipelines."""

import io
import time

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from generation import tasks as generation_tasks
from generation.models import BatchStatus, Candidate, GenerationBatch, GenerationChunk
from generation.pipelines import decode_animated_webp
from generation.services.batches import generation_batch_create
from generation.services.model_versions import model_version_register
from generation.services.prompts import prompt_set_import
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _wait_finished(batch, worker, timeout=180):
    def finished():
        batch.refresh_from_db()
        return batch.is_finished

    wait_for(
        finished,
        timeout=timeout,
        message=f"batch {batch.pk} did not finish:\n{worker.log()[-3000:]}",
    )
    return batch


def test_sticker_then_animation_batch(start_worker, models):
    worker = start_worker()
    prompt_set, _ = prompt_set_import(
        name="e2e", content="a corgi waving\na cup of coffee\n", file_format="text"
    )
    # when: a sticker batch, 2 prompts × 2 seeds
    stickers = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[11, 12],
        params={"num_inference_steps": 3},
    )
    _wait_finished(stickers, worker)
    # then
    assert (stickers.status, stickers.done_count, stickers.failed_count) == (
        BatchStatus.SUCCEEDED,
        4,
        0,
    )
    assert stickers.started_at <= stickers.finished_at
    candidates = list(Candidate.objects.filter(batch=stickers).order_by("prompt__position", "seed"))
    assert [(c.raw_prompt, c.seed) for c in candidates] == [
        ("a corgi waving", 11),
        ("a corgi waving", 12),
        ("a cup of coffee", 11),
        ("a cup of coffee", 12),
    ]
    for c in candidates:
        image = Image.open(io.BytesIO(default_storage.open(c.file).read()))
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (64, 64))
        assert c.inference_ms > 0 and c.device == "cpu" and len(c.sha256) == 64

    # when: two teachers animate the first two stickers with one seed
    teachers = [models["anim-teacher-a"], models["anim-teacher-b"]]
    animations = generation_batch_create(
        kind="animation",
        sources=candidates[:2],
        model_versions=teachers,
        seeds=[3],
        params={"num_inference_steps": 2, "motion_prompt": "waves its paw"},
    )
    _wait_finished(animations, worker)
    assert (animations.status, animations.done_count) == (BatchStatus.SUCCEEDED, 4)
    made = Candidate.objects.filter(batch=animations).order_by("model_version_id", "source_id")
    assert [(a.model_version.name, a.source_id) for a in made] == [
        (t.name, s.pk) for t in teachers for s in candidates[:2]
    ]
    for a in made:
        frames = decode_animated_webp(default_storage.open(a.file).read())
        assert len(frames) == a.frame_count == 8
        assert all(f.mode == "RGBA" and f.size == (64, 64) for f in frames)
        assert a.motion_prompt == "waves its paw"
        assert a.raw_prompt == a.source.raw_prompt
        assert 0.0 <= a.motion_score <= 1.0
        assert default_storage.exists(f"{a.frames_prefix}frame-007.png")


def test_killed_worker_chunk_is_requeued_by_the_sweep_and_completes_once(
    start_worker, models, settings
):
    prompt_set, _ = prompt_set_import(
        name="kill", content="\n".join(f"sticker number {i}" for i in range(4)), file_format="text"
    )
    # One candidate per pipeline call, so the kill lands mid-chunk; the default visibility
    # timeout (an hour), so only the sweep brings the chunk back; a chunk silent for 3 s is stale.
    env = {
        "STICKERLOOP_GENERATION_BATCH_SIZE": 1,
        "STICKERLOOP_HEARTBEAT_SECONDS": 1,
        "STICKERLOOP_SWEEP_STALE_SECONDS": 3,
    }
    settings.SWEEP_STALE_SECONDS = 3
    first = start_worker(**env)
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[1, 2, 3],
        params={"num_inference_steps": 4},
    )

    def some_done():
        batch.refresh_from_db()
        return batch.done_count >= 2

    wait_for(some_done, timeout=120, interval=0.05, message=first.log()[-3000:])
    first.kill()
    killed_at = time.monotonic()
    batch.refresh_from_db()
    done_at_kill = batch.done_count
    assert 2 <= done_at_kill < 12
    assert batch.status == BatchStatus.RUNNING

    second = start_worker(**env)

    def recovered():
        generation_tasks.sweep_chunks()  # what beat runs every SWEEP_EVERY_SECONDS
        batch.refresh_from_db()
        return batch.is_finished

    wait_for(recovered, timeout=120, interval=1, message=second.log()[-3000:])
    assert time.monotonic() - killed_at < 120
    assert (batch.status, batch.done_count, batch.failed_count) == (BatchStatus.SUCCEEDED, 12, 0)
    keys = list(Candidate.objects.filter(batch=batch).values_list("prompt_id", "seed"))
    assert len(keys) == len(set(keys)) == 12
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    assert (chunk.status, chunk.attempts) == ("succeeded", 2)


def test_worker_marks_a_missing_model_folder_failed(start_worker, models, tmp_path):
    worker = start_worker()
    missing = tmp_path / "gone"
    import shutil

    shutil.copytree(models["sticker-base"].uri, missing)
    version = model_version_register(name="gone", kind="image", uri=str(missing))
    shutil.rmtree(missing)
    prompt_set, _ = prompt_set_import(name="m", content="a cat\n", file_format="text")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[version],
        seeds=[1],
        params={},
    )
    _wait_finished(batch, worker)
    assert batch.status == BatchStatus.FAILED
    assert str(missing) in batch.error
    assert not Candidate.objects.exists()
    assert GenerationBatch.objects.get(pk=batch.pk).failed_count == 1
