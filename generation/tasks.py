"""Thin Celery adapters: take ids, call a service. State lives in the database."""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

# Only a lost database connection is worth retrying; bad input fails the chunk in the service.
_TRANSIENT = (OperationalError,)


@shared_task(
    name="generation.plan_batch",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=300,
    time_limit=330,
)
def plan_batch(batch_id: int) -> None:
    from generation.services.batches import generation_batch_plan

    generation_batch_plan(batch_id=batch_id)


@shared_task(
    name="generation.run_chunk",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    # A chunk is GENERATION_CHUNK_SIZE items; on a real model at 512 px that is minutes, not hours.
    soft_time_limit=1800,
    time_limit=1900,
)
def run_chunk(chunk_id: int) -> None:
    from generation.services.chunks import generation_chunk_run

    generation_chunk_run(chunk_id=chunk_id)


@shared_task(
    name="generation.sweep_chunks",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def sweep_chunks() -> None:
    """Beat: requeue chunks whose worker died (``SWEEP_EVERY_SECONDS``)."""
    from generation.services.recovery import generation_chunks_requeue

    generation_chunks_requeue()


@shared_task(
    name="generation.import_prompts",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    # The file is bounded (PROMPT_IMPORT_MAX_BYTES and _MAX_ROWS): 100,000 prompts in 20 MB
    # were read and stored in 3.9 s on the 2-core development machine.
    soft_time_limit=600,
    time_limit=660,
)
def import_prompts(import_id: int) -> None:
    from generation.services.prompts import prompt_import_fail, prompt_import_run

    try:
        prompt_import_run(import_id=import_id)
    except _TRANSIENT:
        raise
    except SoftTimeLimitExceeded:
        prompt_import_fail(import_id=import_id, error="The import ran past its time limit.")
    except Exception as exc:
        prompt_import_fail(import_id=import_id, error=f"{type(exc).__name__}: {exc}")
        raise
