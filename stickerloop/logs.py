"""Log lines that can be followed: each carries the request id and the task id it was written
under, and with ``STICKERLOOP_LOG_FORMAT=json`` each is one JSON object.

A request's id is the ``X-Request-ID`` it came with (from a proxy or a client that wants to
follow it) when that is a plain token, else a new one; the response carries it back. A task
started by a request keeps that request's id beside its own task id, so a click can be followed
into the worker that did the work. Both live in context variables, which every thread and
asyncio task sees as its own.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
# The message header that carries a request's id to the tasks it queues.
TASK_REQUEST_ID_HEADER = "stickerloop_request_id"
# What is taken from a caller: short and plain (a UUID, a proxy's hex id), so that a header
# cannot forge log fields or fill the logs.
_GIVEN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(given: str | None) -> str:
    """The caller's request id when it is a plain token, else a new one."""
    if given and _GIVEN_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in the chain: every line logged while the request is handled carries its id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


class ContextFilter(logging.Filter):
    """Sets ``request_id`` and ``task_id`` on every record that reaches the handler.

    Django logs a 4xx or 5xx answer ("Not Found: /x") after the middleware has returned; that
    record carries the request, which carries its id. Celery logs a message's arrival before its
    task runs, with the task's id in the record's data.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is None:
            request_id = getattr(getattr(record, "request", None), "request_id", None)
        task_id = task_id_var.get()
        if task_id is None and record.name.startswith("celery."):
            data = getattr(record, "data", None)
            task_id = data.get("id") if isinstance(data, dict) else None
        record.request_id = request_id
        record.task_id = task_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    task_id, and the traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "task_id": getattr(record, "task_id", None),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# Celery signal receivers (connected in stickerloop.celery) ---------------------------------


def task_publishing(*, headers: dict, **_) -> None:
    """A task queued while a request is handled carries the request's id."""
    request_id = request_id_var.get()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_REQUEST_ID_HEADER, request_id)


def task_starting(*, task_id: str, task, **_) -> None:
    task_id_var.set(task_id)
    request_id_var.set(getattr(task.request, TASK_REQUEST_ID_HEADER, None))


def task_finished(**_) -> None:
    task_id_var.set(None)
    request_id_var.set(None)
