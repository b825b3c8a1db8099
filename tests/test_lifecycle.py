"""The shared task life cycle, on generation chunks (a row with every life-cycle column)."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from generation.models import (
    TERMINAL_CHUNK_STATUSES,
    ChunkStatus,
    GenerationBatch,
    GenerationChunk,
    ModelVersion,
)
from stickerloop.lifecycle import (
    claim,
    heartbeat,
    heartbeat_fresh,
    lock_unfinished,
    mark_finished,
    mark_running,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

FIRST = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)


@pytest.fixture
def chunk():
    version = ModelVersion.objects.create(name="m", kind="image", uri="/nowhere")
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1], total=1)
    return GenerationChunk.objects.create(
        batch=batch, index=0, model_version=version, items=[{"prompt": 1, "seed": 1}]
    )


def _row(chunk) -> tuple:
    return GenerationChunk.objects.values_list(
        "status", "attempts", "started_at", "finished_at", "error"
    ).get(pk=chunk.pk)


def test_claim_marks_running_and_counts_the_attempt(chunk):
    claimed = claim(
        GenerationChunk.objects,
        chunk.pk,
        finished=TERMINAL_CHUNK_STATUSES,
        now=FIRST,
        count_attempt=True,
    )

    assert (claimed.status, claimed.attempts, claimed.started_at) == ("running", 1, FIRST)
    assert _row(chunk) == ("running", 1, FIRST, None, "")


def test_a_redelivered_running_row_is_claimed_again(chunk):
    claim(GenerationChunk.objects, chunk.pk, finished=TERMINAL_CHUNK_STATUSES, now=FIRST)

    claimed = claim(GenerationChunk.objects, chunk.pk, finished=TERMINAL_CHUNK_STATUSES, now=LATER)

    assert claimed is not None
    assert _row(chunk) == ("running", 0, LATER, None, "")


def test_keep_started_at_keeps_the_first_start(chunk):
    claim(GenerationChunk.objects, chunk.pk, finished=TERMINAL_CHUNK_STATUSES, now=FIRST)

    claim(
        GenerationChunk.objects,
        chunk.pk,
        finished=TERMINAL_CHUNK_STATUSES,
        now=LATER,
        keep_started_at=True,
        count_attempt=True,
    )

    assert _row(chunk) == ("running", 1, FIRST, None, "")


@pytest.mark.parametrize("status", TERMINAL_CHUNK_STATUSES)
def test_claim_leaves_a_finished_row_alone(chunk, status):
    GenerationChunk.objects.filter(pk=chunk.pk).update(status=status, finished_at=FIRST)

    claimed = claim(
        GenerationChunk.objects, chunk.pk, finished=TERMINAL_CHUNK_STATUSES, count_attempt=True
    )

    assert claimed is None
    assert _row(chunk) == (status, 0, None, FIRST, "")


def test_lock_unfinished_raises_for_a_missing_row(chunk):
    with pytest.raises(GenerationChunk.DoesNotExist):
        lock_unfinished(GenerationChunk.objects, chunk.pk + 1, finished=TERMINAL_CHUNK_STATUSES)


def test_mark_running_sets_further_fields_in_the_same_update(chunk, django_assert_num_queries):
    with django_assert_num_queries(1):
        mark_running(chunk, now=FIRST, fields={"error": "retrying"})

    assert _row(chunk) == ("running", 0, FIRST, None, "retrying")


def test_mark_finished_records_status_error_and_time(chunk, django_assert_num_queries):
    with django_assert_num_queries(1):
        mark_finished(chunk, status=ChunkStatus.FAILED, error="ValueError: bad", now=LATER)

    assert _row(chunk) == ("failed", 0, None, LATER, "ValueError: bad")


@pytest.mark.django_db(transaction=True)
def test_heartbeat_stamps_running_rows_from_a_thread_until_the_block_ends(chunk):
    # given: a running chunk and a queued one, both silent since FIRST
    queued = GenerationChunk.objects.create(
        batch=chunk.batch, index=1, model_version=chunk.model_version, items=[]
    )
    GenerationChunk.objects.filter(pk=chunk.pk).update(status="running", heartbeat_at=FIRST)
    GenerationChunk.objects.filter(pk=queued.pk).update(heartbeat_at=FIRST)
    # when
    with heartbeat(GenerationChunk.objects.all(), every=0.05):
        wait_for(
            lambda: GenerationChunk.objects.get(pk=chunk.pk).heartbeat_at > FIRST,
            timeout=10,
            interval=0.05,
        )
    stamped = GenerationChunk.objects.get(pk=chunk.pk).heartbeat_at
    time.sleep(0.2)
    # then: only the running row beat, and the beat stopped with the block
    assert GenerationChunk.objects.get(pk=chunk.pk).heartbeat_at == stamped
    assert GenerationChunk.objects.get(pk=queued.pk).heartbeat_at == FIRST


def test_heartbeat_fresh_only_for_a_running_row_within_the_threshold(chunk):
    chunk.heartbeat_at = FIRST
    assert heartbeat_fresh(chunk, stale_seconds=60, now=FIRST + timedelta(seconds=60)) is False
    chunk.status = "running"
    assert heartbeat_fresh(chunk, stale_seconds=60, now=FIRST + timedelta(seconds=60)) is True
    assert heartbeat_fresh(chunk, stale_seconds=60, now=FIRST + timedelta(seconds=61)) is False
