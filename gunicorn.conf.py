"""gunicorn's settings for the web process: gunicorn reads this file from the folder it starts
in, so `gunicorn stickerloop.wsgi:application` here needs no -c."""

import os

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
