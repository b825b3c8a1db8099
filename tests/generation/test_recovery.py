"""The chunk sweep against real PostgreSQL: which chunks it requeues, and that a requeued
chunk and a late redelivery of its old message run it once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from generation import tasks as generation_tasks
from generation.models import ChunkStatus, GenerationBatch, GenerationChunk, ModelVersion
from generation.services.chunks import _chunk_claim
from generation.services.recovery import generation_chunks_requeue

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The broker is the boundary: record what the sweep sends."""
    messages = []
    monkeypatch.setattr(generation_tasks.run_chunk, "delay", lambda *a: messages.append(a))
    return messages


@pytest.fixture
def chunks(settings):
    settings.SWEEP_STALE_SECONDS = 60
    settings.SWEEP_QUEUED_SECONDS = 900
    version = ModelVersion.objects.create(name="m", kind="image", uri="/nowhere")
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1], total=6, status="running")
    return [
        GenerationChunk.objects.create(
            batch=batch, index=i, model_version=version, items=[{"prompt": i, "seed": 1}]
        )
        for i in range(6)
    ]


def _set(chunk, status, age_seconds, now):
    GenerationChunk.objects.filter(pk=chunk.pk).update(
        status=status, heartbeat_at=now - timedelta(seconds=age_seconds)
    )


def test_the_sweep_requeues_stale_running_and_long_queued_chunks(
    chunks, sent, django_capture_on_commit_callbacks
):
    now = timezone.now()
    _set(chunks[0], ChunkStatus.RUNNING, 61, now)  # its worker died
    _set(chunks[1], ChunkStatus.RUNNING, 59, now)  # alive
    _set(chunks[2], ChunkStatus.QUEUED, 901, now)  # its message was lost
    _set(chunks[3], ChunkStatus.QUEUED, 899, now)  # waiting its turn
    _set(chunks[4], ChunkStatus.SUCCEEDED, 3600, now)
    _set(chunks[5], ChunkStatus.FAILED, 3600, now)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        requeued = generation_chunks_requeue(now=now)
    # then
    assert requeued == [chunks[0].pk, chunks[2].pk]
    assert sent == [(chunks[0].pk,), (chunks[2].pk,)]
    rows = GenerationChunk.objects.order_by("index").values_list("status", "heartbeat_at")
    assert list(rows) == [
        ("queued", now),
        ("running", now - timedelta(seconds=59)),
        ("queued", now),
        ("queued", now - timedelta(seconds=899)),
        ("succeeded", now - timedelta(seconds=3600)),
        ("failed", now - timedelta(seconds=3600)),
    ]
    # and the next sweep leaves the requeued chunks alone: their heartbeat is fresh
    with django_capture_on_commit_callbacks(execute=True):
        assert generation_chunks_requeue(now=now + timedelta(seconds=0.5)) == []
    assert len(sent) == 2


def test_a_requeued_chunk_is_claimed_once_by_its_two_messages(chunks):
    # given: the sweep requeued a dead worker's chunk, and the broker redelivers the old message
    now = timezone.now()
    _set(chunks[0], ChunkStatus.RUNNING, 120, now)
    generation_chunks_requeue(now=now)
    # when: both messages arrive
    first = _chunk_claim(chunks[0].pk)
    second = _chunk_claim(chunks[0].pk)
    # then: the first runs it, the second finds it running with a fresh heartbeat
    assert first is not None and second is None
    chunks[0].refresh_from_db()
    assert (chunks[0].status, chunks[0].attempts) == ("running", 1)


def test_a_redelivery_takes_over_a_stale_running_chunk(chunks):
    now = timezone.now()
    _set(chunks[0], ChunkStatus.RUNNING, 61, now)

    claimed = _chunk_claim(chunks[0].pk)

    assert claimed is not None
    chunks[0].refresh_from_db()
    assert chunks[0].attempts == 1 and timezone.now() - chunks[0].heartbeat_at < timedelta(
        seconds=5
    )
