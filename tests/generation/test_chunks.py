"""Chunks run in-process against real PostgreSQL and the real tiny pipelines."""

import io
import re
import shutil
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from generation.models import BatchStatus, Candidate, ChunkStatus, GenerationBatch, GenerationChunk
from generation.services.batches import (
    generation_batch_cancel,
    generation_batch_create,
    generation_batch_plan,
)
from generation.services.chunks import candidate_file_key, generation_chunk_run
from generation.services.model_versions import model_version_register
from generation.services.prompts import prompt_set_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt_set():
    prompt_set, _ = prompt_set_import(name="p", content="a cat\na dog\na fox\n", file_format="text")
    return prompt_set


def _batch(models, prompt_set, *, seeds=(1, 2), names=("sticker-base",), **params):
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models[n] for n in names],
        seeds=list(seeds),
        params={"num_inference_steps": 2, **params},
    )
    generation_batch_plan(batch_id=batch.pk)
    return batch


def test_plan_is_idempotent(models, prompt_set, settings):
    settings.GENERATION_CHUNK_SIZE = 4
    batch = _batch(models, prompt_set)
    assert generation_batch_plan(batch_id=batch.pk) == []
    chunks = list(GenerationChunk.objects.filter(batch=batch))
    assert [len(c.items) for c in chunks] == [4, 2]
    assert chunks[0].items == [
        {"prompt": p, "seed": s}
        for p in prompt_set.prompts.order_by("position").values_list("pk", flat=True)[:2]
        for s in (1, 2)
    ]
    batch.refresh_from_db()
    assert batch.chunks_total == 2


def test_chunk_run_twice_stores_each_candidate_once(models, prompt_set):
    batch = _batch(models, prompt_set)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    # when
    generation_chunk_run(chunk_id=chunk.pk)
    first = list(Candidate.objects.order_by("id").values_list("prompt_id", "seed", "sha256"))
    # Simulate a redelivery after the worker died before acking: run it again from RUNNING,
    # its heartbeat stale.
    GenerationChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    GenerationBatch.objects.filter(pk=batch.pk).update(
        chunks_finished=0, status=BatchStatus.RUNNING
    )
    generation_chunk_run(chunk_id=chunk.pk)
    # then
    assert (
        list(Candidate.objects.order_by("id").values_list("prompt_id", "seed", "sha256")) == first
    )
    assert len(first) == 6
    batch.refresh_from_db()
    assert (batch.status, batch.done_count, batch.failed_count) == (BatchStatus.SUCCEEDED, 6, 0)


def test_finished_chunk_is_a_no_op(models, prompt_set):
    batch = _batch(models, prompt_set, seeds=[7])
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    generation_chunk_run(chunk_id=chunk.pk)
    chunk.refresh_from_db()
    assert (chunk.status, chunk.attempts) == (ChunkStatus.SUCCEEDED, 1)
    assert Candidate.objects.count() == 3


def test_candidates_carry_provenance_and_decode(models, prompt_set):
    batch = _batch(models, prompt_set, seeds=[5], guidance_scale=3.0)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    candidate = Candidate.objects.get(prompt__text="a dog")
    assert candidate.seed == 5
    assert candidate.raw_prompt == "a dog"
    assert candidate.model_version == models["sticker-base"]
    assert candidate.device == "cpu"
    assert candidate.inference_ms > 0
    assert candidate.params["num_inference_steps"] == 2
    assert candidate.params["guidance_scale"] == 3.0
    assert candidate.params["alpha_source"] == "model"
    assert candidate.file == candidate_file_key(
        batch_id=batch.pk,
        model_version_id=models["sticker-base"].pk,
        key=(candidate.prompt_id, 5),
        ext="png",
    )
    data = default_storage.open(candidate.file).read()
    import hashlib

    assert hashlib.sha256(data).hexdigest() == candidate.sha256
    assert candidate.file_size == len(data)
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (64, 64))


def test_missing_model_folder_fails_the_batch_and_writes_nothing(models, prompt_set, tmp_path):
    moved = tmp_path / "moved"
    base = models["sticker-base"]
    shutil.copytree(base.uri, moved)
    base.uri = str(moved)
    base.save()
    batch = _batch(models, prompt_set, seeds=[1])
    shutil.rmtree(moved)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED
    assert str(moved) in batch.error
    assert (batch.done_count, batch.failed_count) == (0, 3)
    assert Candidate.objects.count() == 0
    assert not default_storage.exists(f"candidates/{batch.pk}")


def test_one_failing_model_makes_the_batch_partial(models, prompt_set, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(models["sticker-base"].uri, broken)
    other = model_version_register(name="broken", kind="image", uri=str(broken))
    # Corrupt the UNet weights after registration.
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"], other],
        seeds=[1],
        params={"num_inference_steps": 2},
    )
    generation_batch_plan(batch_id=batch.pk)
    for chunk in GenerationChunk.objects.filter(batch=batch):
        generation_chunk_run(chunk_id=chunk.pk)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.PARTIAL
    assert (batch.done_count, batch.failed_count) == (3, 3)
    assert str(broken) in batch.error
    assert Candidate.objects.filter(model_version=other).count() == 0


def test_cancel_stops_queued_chunks(models, prompt_set):
    batch = _batch(models, prompt_set, seeds=[1])
    generation_batch_cancel(batch=batch)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    chunk.refresh_from_db()
    batch.refresh_from_db()
    assert chunk.status == ChunkStatus.CANCELLED
    assert batch.status == BatchStatus.CANCELLED
    assert Candidate.objects.count() == 0


def test_cancel_twice_is_409(api, curator, models, prompt_set):
    batch = _batch(models, prompt_set, seeds=[1])
    client = api(curator)
    assert client.post(f"/api/batches/{batch.pk}/cancel/").json()["status"] == "cancelled"
    response = client.post(f"/api/batches/{batch.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {"detail": f"Batch {batch.pk} has already ended (cancelled)."}


def test_candidate_file_key_is_opaque_and_deterministic():
    key = candidate_file_key(batch_id=7, model_version_id=3, key=(11, 5), ext="png")
    assert key == candidate_file_key(batch_id=7, model_version_id=3, key=(11, 5), ext="png")
    assert re.fullmatch(r"candidates/7/[0-9a-f]{32}\.png", key)
    others = {
        candidate_file_key(batch_id=7, model_version_id=4, key=(11, 5), ext="png"),
        candidate_file_key(batch_id=7, model_version_id=3, key=(12, 5), ext="png"),
        candidate_file_key(batch_id=7, model_version_id=3, key=(11, 6), ext="png"),
    }
    assert len(others) == 3 and key not in others
