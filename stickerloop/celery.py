import os
import sys

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
)

from stickerloop import logs
from stickerloop.metrics import tasks as task_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stickerloop.settings")

app = Celery("stickerloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every log line a task writes carries its task id, and the id of the request that queued it.
before_task_publish.connect(logs.task_publishing, weak=False)
task_prerun.connect(logs.task_starting, weak=False)
task_postrun.connect(logs.task_finished, weak=False)
# Task durations and failures for /metrics, kept where every web process can read them.
task_prerun.connect(task_metrics.task_starting, weak=False)
task_postrun.connect(task_metrics.task_finished, weak=False)
task_failure.connect(task_metrics.task_failed, weak=False)


@worker_init.connect
@beat_init.connect
def preflight(**_) -> None:
    """Stop a worker or beat at start-up, with one line naming the part, when its database,
    broker or storage is unreachable or misconfigured (``manage.py preflight``): without it a
    worker waits for its broker for ever and fails each task on the rest."""
    from stickerloop import health

    try:
        health.preflight()
    except health.Unavailable as problem:
        # The process's own stderr: beat has redirected sys.stderr into its log by now.
        sys.__stderr__.write(f"preflight: {problem}\n")
        sys.__stderr__.flush()
        raise SystemExit(1) from None


@worker_init.connect
def load_export_code(**_) -> None:
    """Load what exports run on as the worker starts, before its pool does, so that the first
    export does not pay for it: the tasks import the services lazily (the services import the
    tasks), and pyarrow loads pandas on the first array it builds (0.2 s)."""
    import training_bridge.exports.run  # noqa: F401
    from training_bridge.exports.writers import load_arrow

    load_arrow()
