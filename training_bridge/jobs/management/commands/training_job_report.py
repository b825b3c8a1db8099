"""Report an externally launched run's progress and register its result.

    accelerate launch ... -m training_bridge.recipes.train --spec job-12/spec.json \\
        | python manage.py training_job_report --job 12 --register

reads the recipe's JSON lines (from stdin, or ``--file``) as they come, records them on the
job in batches, and, with ``--register``, registers the output folder once the run is done.
``--register`` alone with ``--file /dev/null`` registers a finished folder (``--output-dir``).
"""

import sys
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from stickerloop.errors import ServiceConflict
from training_bridge.jobs.models import TrainingJob
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report
from training_bridge.recipes.progress import parse_line

BATCH_EVENTS = 200
BATCH_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Record a recipe's JSON-lines progress on a training job; optionally register its output."
    )

    def add_arguments(self, parser):
        parser.add_argument("--job", type=int, required=True)
        parser.add_argument("--file", help="Read this file instead of stdin.")
        parser.add_argument(
            "--register",
            action="store_true",
            help="Register the output when the run reports it is done.",
        )
        parser.add_argument("--output-dir", help="The output folder, if not the spec's.")

    def handle(
        self, *args, job: int, file: str | None, register: bool, output_dir: str | None, **options
    ):
        try:
            training_job = TrainingJob.objects.get(pk=job)
        except TrainingJob.DoesNotExist as exc:
            raise CommandError(f"No training job {job}.") from exc
        stream = open(file, encoding="utf-8") if file else sys.stdin  # noqa: SIM115
        events: list[dict] = []
        lines: list[str] = []
        done = False
        last = time.monotonic()
        try:
            for raw in stream:
                line = raw.rstrip("\n")
                lines.append(line)
                event = parse_line(line)
                if event is not None:
                    events.append(event)
                    done = done or event["event"] == "done"
                if len(events) >= BATCH_EVENTS or time.monotonic() - last >= BATCH_SECONDS:
                    self._send(training_job, events, lines)
                    events, lines, last = [], [], time.monotonic()
            if events or lines:
                self._send(training_job, events, lines)
        finally:
            if file:
                stream.close()
        if register and (done or file == "/dev/null"):
            try:
                version = training_job_register_output(job=training_job, output_uri=output_dir)
            except (ValidationError, ServiceConflict) as exc:
                raise CommandError(f"Registering the output failed: {exc}") from exc
            self.stdout.write(f"job {job}: registered model version {version.name} ({version.pk})")
        elif register:
            raise CommandError("The run did not report that it was done; nothing registered.")

    def _send(self, job: TrainingJob, events: list[dict], lines: list[str]) -> None:
        try:
            keep = training_job_progress_report(job=job, events=events, log_lines=lines)
        except (ValidationError, ServiceConflict) as exc:
            raise CommandError(f"The job refused the report: {exc}") from exc
        if not keep:
            raise CommandError(f"Job {job.pk} was cancelled or has ended; stop the run.")
