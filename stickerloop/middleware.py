"""One gate for request input, ahead of every page and API view.

Input that no column can hold used to reach the database and come back as a 500: a NUL character
(PostgreSQL text cannot store it), a JSON integer beyond bigint, JSON nested deeper than Python's
recursion limit, a JSON body of any size (DRF reads the stream itself and skips Django's
DATA_UPLOAD_MAX_MEMORY_SIZE check). This middleware refuses such requests with a 400 that names the
field (its path in nested JSON, e.g. ``answers.note``) before a view runs. API paths get JSON in
DRF's error shape; pages get a short text answer.
"""

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpResponseBadRequest, JsonResponse, QueryDict

from stickerloop.converters import BIGINT_MAX

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
NUL_MESSAGE = "Null characters are not allowed."
BIGINT_MIN = -(2**63)
INTEGER_MESSAGE = f"Must be between {BIGINT_MIN} and {BIGINT_MAX}."
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def body_limit_text() -> str:
    """DATA_UPLOAD_MAX_MEMORY_SIZE in words, e.g. ``2.5 MiB (2,621,440 bytes)``."""
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"{size / 2**20:g} MiB ({size:,} bytes)"


class InputProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise InputProblem(field, NUL_MESSAGE)


def _check_query_dict(data: QueryDict) -> None:
    for key, values in data.lists():
        _check_text(key.replace("\x00", "\\x00"), key)
        for value in values:
            _check_text(key, value)


def _check_json(data) -> None:
    """Walk parsed JSON without recursion: depth, NUL in keys and strings, integer range."""
    max_depth = settings.REQUEST_JSON_MAX_DEPTH
    stack = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise InputProblem("", f"JSON may nest at most {max_depth} levels.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                name = str(key).replace("\x00", "\\x00")
                child_path = f"{path}.{name}" if path else name
                if isinstance(key, str):
                    _check_text(child_path, key)
                stack.append((child_path, child, depth + 1))
        elif isinstance(value, str):
            _check_text(path, value)
        elif isinstance(value, int) and not BIGINT_MIN <= value <= BIGINT_MAX:
            raise InputProblem(path, INTEGER_MESSAGE)


def _check_request(request) -> None:
    if "\x00" in request.path:
        raise InputProblem("", "The URL holds a NUL character.")
    _check_query_dict(request.GET)
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    content_type = request.content_type or ""
    try:
        if content_type == "application/json" or content_type.endswith("+json"):
            if not request.body:
                return
            try:
                data = json.loads(request.body)
            except RecursionError as exc:
                depth = settings.REQUEST_JSON_MAX_DEPTH
                raise InputProblem("", f"JSON may nest at most {depth} levels.") from exc
            except ValueError:
                return  # Not JSON: the view's parser answers with its own message.
            _check_json(data)
        elif content_type in FORM_TYPES:
            if request.method == "POST":
                _check_query_dict(request.POST)
            elif content_type == "application/x-www-form-urlencoded":
                _check_query_dict(QueryDict(request.body))
    except RequestDataTooBig as exc:
        raise InputProblem("", f"The request body is over {body_limit_text()}.") from exc
    except TooManyFieldsSent as exc:
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        raise InputProblem("", f"The request has more than {limit} fields.") from exc


class InputGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            _check_request(request)
        except InputProblem as problem:
            logger.info(
                "Refused %s %s: %s %s",
                request.method,
                request.path[:200],
                problem.field,
                problem.message,
            )
            if request.path.startswith(API_PREFIX):
                if problem.field:
                    return JsonResponse({problem.field: [problem.message]}, status=400)
                return JsonResponse({"detail": problem.message}, status=400)
            text = f"{problem.field}: {problem.message}" if problem.field else problem.message
            return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
