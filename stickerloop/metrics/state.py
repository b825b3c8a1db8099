"""Judgments per minute, leases, and the progress of batches, exports and training jobs, read
from the database at scrape time: five queries, none of which reads a whole large table."""

from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from annotation.selectors import judgment_counts_since, lease_counts
from generation.models import BatchStatus
from generation.selectors import batch_totals_by_status
from training_bridge.jobs.models import JobStatus
from training_bridge.jobs.selectors import training_job_totals_by_status
from training_bridge.models import TaskStatus
from training_bridge.selectors import export_totals_by_status

# Work not finished yet: its totals are the progress still to watch.
UNFINISHED = ("queued", "running")


def _progress(*, what: str, name: str, progress: str, statuses, rows: dict, count: str) -> list:
    """A gauge of how many by status (every status, 0 where none), and one of the units asked
    for (``total``) and done (``done``) over the unfinished ones."""
    by_status = GaugeMetricFamily(name, f"{what} by status.", labels=["status"])
    for status in statuses:
        by_status.add_metric([status], rows.get(status, {}).get(count, 0))
    units = GaugeMetricFamily(
        progress,
        f"Over the queued and running {what.lower()}: asked for and done.",
        labels=["state"],
    )
    unfinished = [rows[s] for s in UNFINISHED if s in rows]
    for state in ("total", "done"):
        units.add_metric([state], sum(row[state] or 0 for row in unfinished))
    return [by_status, units]


def families() -> list:
    now = timezone.now()
    judgments = GaugeMetricFamily(
        "stickerloop_judgments_per_minute",
        "Judgments stored in the last 60 seconds: judged items and skips.",
        labels=["kind"],
    )
    for kind, count in judgment_counts_since(since=now - timedelta(minutes=1)).items():
        judgments.add_metric([kind], count)
    leases = GaugeMetricFamily(
        "stickerloop_leases",
        "Leases counted on their items: active, and expired but not yet given back.",
        labels=["state"],
    )
    for state, count in lease_counts(now=now).items():
        leases.add_metric([state], count)
    return [
        judgments,
        leases,
        *_progress(
            what="Generation batches",
            name="stickerloop_generation_batches",
            progress="stickerloop_generation_batch_candidates",
            statuses=BatchStatus.values,
            rows=batch_totals_by_status(),
            count="batches",
        ),
        *_progress(
            what="Dataset exports",
            name="stickerloop_dataset_exports",
            progress="stickerloop_dataset_export_entries",
            statuses=TaskStatus.values,
            rows=export_totals_by_status(),
            count="exports",
        ),
        *_progress(
            what="Training jobs",
            name="stickerloop_training_jobs",
            progress="stickerloop_training_job_steps",
            statuses=JobStatus.values,
            rows=training_job_totals_by_status(),
            count="jobs",
        ),
    ]
