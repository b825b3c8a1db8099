"""One gate for request input, ahead of every page and API view.

Input that no column can hold used to reach the database and come back as a 500: a NUL character
(PostgreSQL text cannot store it), a JSON integer beyond bigint, JSON nested deeper than Python's
recursion limit, a JSON body of any size (DRF reads the stream itself and skips Django's
DATA_UPLOAD_MAX_MEMORY_SIZE check). This middleware refuses such requests with a 400 that names the
field (its path in nested JSON, e.g. ``answers.note``) before a view runs. API paths get JSON in
DRF's error shape; pages get a short text answer.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict

from stickerloop.input_checks import InputProblem, check_query_dict, json_loads_checked

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def body_limit_text() -> str:
    """DATA_UPLOAD_MAX_MEMORY_SIZE in words, e.g. ``2.5 MiB (2,621,440 bytes)``."""
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"{size / 2**20:g} MiB ({size:,} bytes)"


def _check_request(request) -> None:
    if "\x00" in request.path:
        raise InputProblem("", "The URL holds a NUL character.")
    check_query_dict(request.GET)
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    content_type = request.content_type or ""
    try:
        if content_type == "application/json" or content_type.endswith("+json"):
            if not request.body:
                return
            try:
                # Kept for the API's parser (stickerloop.api.CheckedJSONParser): the body is
                # decoded once per request.
                request.checked_json = json_loads_checked(request.body, strict=True)
            except ValueError:
                return  # Not JSON: the view's parser answers with its own message.
        elif content_type in FORM_TYPES:
            if request.method == "POST":
                check_query_dict(request.POST)
            elif content_type == "application/x-www-form-urlencoded":
                check_query_dict(QueryDict(request.body))
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
            return HttpResponseBadRequest(str(problem), content_type="text/plain; charset=utf-8")
        return self.get_response(request)


DATABASE_UNAVAILABLE = "The database is unavailable for a moment; try again."
RETRY_AFTER_SECONDS = 1


class DatabaseUnavailableMiddleware:
    """A view whose database connection broke mid-request answers 503 with Retry-After, not 500.

    CONN_HEALTH_CHECKS replaces a connection the server dropped between requests; one dropped
    while a request uses it (a failover, pg_terminate_backend, a restart) fails that request's
    query. Django cannot replay the request (it may have written before the break, and the
    transaction is gone), so the honest answer is "unavailable, retry". Django closes the broken
    connection when the request ends, and the next request opens a new one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "Database unavailable during %s %s: %s", request.method, request.path[:200], exception
        )
        if request.path.startswith(API_PREFIX):
            response = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
        else:
            response = HttpResponse(
                DATABASE_UNAVAILABLE, status=503, content_type="text/plain; charset=utf-8"
            )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
