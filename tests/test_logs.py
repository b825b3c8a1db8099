"""With STICKERLOOP_LOG_FORMAT=json every line is one JSON object carrying the request id and
the task id it was written under: the web server's lines, and a worker's for a task that a
request queued."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests
from django.db import connection
from django.urls import reverse

from annotation.quality.models import AggregationRun
from tests import factories as f
from tests.conftest import wait_for

FIELDS = {"time", "level", "logger", "message", "request_id", "task_id", "process"}
NEW_ID = re.compile(r"[0-9a-f]{32}")


def _lines(text: str) -> list[dict]:
    """Every line of a log, each parsed as one JSON object with exactly the log's fields."""
    entries = [json.loads(line) for line in text.splitlines()]
    assert entries
    assert all(set(entry) == FIELDS for entry in entries), entries
    return entries


def _of(entries: list[dict], **wanted) -> list[tuple[str, str, str]]:
    return [
        (e["level"], e["logger"], e["message"])
        for e in entries
        if all(e[k] == v for k, v in wanted.items())
    ]


def test_a_requests_lines_carry_its_id(serve, tmp_path):
    site = serve(log_level="info", STICKERLOOP_LOG_FORMAT="json", STICKERLOOP_MEDIA_ROOT=tmp_path)
    # when: a request with its own id, refused by a middleware (logged inside the request)
    refused = requests.get(
        f"{site.url}/api/me/?q=%00", headers={"X-Request-ID": "req-logs-1"}, timeout=30
    )
    # a request without one, which Django logs after the middleware has returned
    missing = requests.get(f"{site.url}/no/such/page", timeout=30)
    # an id that is not a plain token is replaced
    odd = requests.get(f"{site.url}/healthz", headers={"X-Request-ID": 'x" y'}, timeout=30)
    site.stop()
    # then: the response names the id its lines carry
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (400, "req-logs-1")
    assert missing.status_code == 404 and NEW_ID.fullmatch(missing.headers["X-Request-ID"])
    assert NEW_ID.fullmatch(odd.headers["X-Request-ID"])
    entries = _lines(site.log())
    assert _of(entries, request_id="req-logs-1") == [
        (
            "INFO",
            "stickerloop.middleware",
            "Refused GET /api/me/: q Null characters are not allowed.",
        ),
        ("WARNING", "django.request", "Bad Request: /api/me/"),
    ]
    assert _of(entries, request_id=missing.headers["X-Request-ID"]) == [
        ("WARNING", "django.request", "Not Found: /no/such/page")
    ]
    # gunicorn's own lines are JSON too, outside any request
    assert ("INFO", "gunicorn.error", "Starting gunicorn 27.0.1") in _of(entries, request_id=None)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_tasks_lines_carry_its_id_and_its_requests(api, curator, broker_clean, tmp_path):
    camp = f.campaign(questions=[{"key": "ok", "type": "binary", "label": "OK?"}], overlap=1)
    f.judge(f.items(camp, 1)[0], f.rater("logs-rater"), {"ok": True})
    db = connection.settings_dict
    log_path = tmp_path / "worker.log"
    # -q: no start-up banner, which is printed, not logged
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-q", "-A", "stickerloop", "worker", "-Q", "default"]
        + ["--pool", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "STICKERLOOP_MEDIA_ROOT": str(tmp_path),
            "STICKERLOOP_LOG_FORMAT": "json",
        },
        stdout=open(log_path, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # when: a request queues a task
        response = api(curator).post(
            reverse("api-quality-compute", args=[camp.pk]),
            {"methods": ["majority"]},
            format="json",
            HTTP_X_REQUEST_ID="req-task-1",
        )
        assert response.status_code == 202
        wait_for(
            lambda: AggregationRun.objects.filter(
                pk=response.json()["id"], finished_at__isnull=False
            ).exists(),
            timeout=90,
            message=log_path.read_text(errors="replace"),
        )
        # The run's task, then the webhook event it queued as it finished: stopping the worker
        # after the first alone lost the second now and then.
        wait_for(lambda: log_path.read_text().count("succeeded in") == 2, timeout=30)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    # Celery prints (does not log) one line as it stops.
    text = log_path.read_text().replace("\n\nworker: Warm shutdown (MainProcess)\n", "\n")
    entries = _lines(text)
    finished = {
        e["message"].partition("[")[0]: e for e in entries if e["logger"] == "celery.app.trace"
    }
    # the aggregation run, and the webhook event it announced in turn
    assert sorted(finished) == ["Task quality.aggregate_campaign", "Task webhooks.record_event"]
    for entry in finished.values():
        # then: every line of a task carries its id; those written while it ran, the request's
        # too (the consumer logs a message's arrival before the task runs, without it)
        assert [
            (e["logger"], e["request_id"]) for e in entries if e["task_id"] == entry["task_id"]
        ] == [("celery.worker.strategy", None), ("celery.app.trace", "req-task-1")]
