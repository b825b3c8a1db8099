"""Thin Celery adapters: take ids, call a service. State lives in the database."""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

# Only a lost database connection is worth retrying; bad input fails the row in the service.
_TRANSIENT = (OperationalError,)


@shared_task(
    name="training_bridge.run_exports",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    # 100,000 small stickers export in a few seconds; a million 512-px images in tens of minutes.
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def run_exports(export_ids: list[int], part: int = 0) -> None:
    """One part of exports of one version, written in one pass."""
    from training_bridge.exports import run

    try:
        run.dataset_exports_run(export_ids=export_ids, part=part)
    except _TRANSIENT:
        raise
    except SoftTimeLimitExceeded:
        run.dataset_exports_fail(
            export_ids=export_ids, error="The export ran past its time limit (3 hours)."
        )
    except Exception as exc:
        # A bug must not leave an export "running" for ever; the traceback goes to the log.
        run.dataset_exports_fail(export_ids=export_ids, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name="training_bridge.sweep_exports",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def sweep_exports() -> None:
    """Beat: requeue exports whose worker died and remove its scratch (``SWEEP_EVERY_SECONDS``)."""
    from training_bridge.exports.recovery import dataset_exports_recover

    dataset_exports_recover()


@shared_task(
    name="training_bridge.run_weak_import",
    acks_late=True,
    ignore_result=True,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 60,
)
def run_weak_import(import_id: int) -> None:
    from training_bridge import weak_imports

    try:
        weak_imports.weak_import_run(import_id=import_id)
    except _TRANSIENT:
        raise
    except SoftTimeLimitExceeded:
        weak_imports.weak_import_fail(
            import_id=import_id, error="The import ran past its time limit (6 hours)."
        )
    except Exception as exc:
        weak_imports.weak_import_fail(import_id=import_id, error=f"{type(exc).__name__}: {exc}")
        raise
