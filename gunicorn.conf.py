"""gunicorn's settings for the web process: gunicorn reads this file from the folder it starts
in, so `gunicorn stickerloop.wsgi:application` here needs no -c."""

import os
import shutil
import tempfile
from pathlib import Path

# Request metrics across the workers (stickerloop.metrics): each worker writes its counts to
# files in PROMETHEUS_MULTIPROC_DIR and a scrape adds them all up. The variable must be set
# before the workers import prometheus-client; without one, a folder of this server's own.
_made_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _made_metrics_dir = tempfile.mkdtemp(prefix="stickerloop-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _made_metrics_dir


def on_starting(server):
    """Empty the metrics folder: an earlier server's counts would be added to this one's (the
    folder belongs to this server alone; the Celery workers keep theirs in Redis)."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def on_exit(server):
    if _made_metrics_dir is not None:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


# gunicorn's own lines (start-up, worker restarts, timeouts) as JSON too, like the site's.
if os.environ.get("STICKERLOOP_LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "stickerloop.logs.ContextFilter"}},
        "formatters": {"json": {"()": "stickerloop.logs.JsonFormatter"}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            },
            "null": {"class": "logging.NullHandler"},
        },
        "root": {"level": "INFO", "handlers": ["json"]},
        # No level: gunicorn's --log-level still applies.
        "loggers": {
            "gunicorn.error": {"handlers": ["json"], "propagate": False},
            # A logging config turns gunicorn's access log on; it would repeat every request
            # without the request id that Django's lines carry. Off, as without this config.
            "gunicorn.access": {"handlers": ["null"], "propagate": False},
        },
    }
