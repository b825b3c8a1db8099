"""Shared API plumbing: service errors become 4xx answers that name the field and the problem."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from stickerloop.errors import ServiceConflict, validation_error_detail
from stickerloop.ids import MAX_ID

logger = logging.getLogger(__name__)


class CheckedJSONParser(JSONParser):
    """DRF's JSON parser, taking the body the input gate (``InputGuardMiddleware``) has already
    decoded and checked, so that an API request's JSON is parsed once; a request that did not pass
    through the gate is parsed here as usual."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        django_request = getattr(request, "_request", None)
        if django_request is not None and hasattr(django_request, "checked_json"):
            return django_request.checked_json
        return super().parse(stream, media_type, parser_context)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def exception_handler(exc, context):
    if isinstance(exc, DataError):
        # The last line of defence (input is checked before it gets here): a number or text the
        # column cannot hold. The statement failed, so nothing was written; the atomic block
        # around the service, if any, has rolled back.
        logger.warning("Refused input the database could not hold: %s", exc)
        return Response(
            {"detail": "A value does not fit its database column."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DjangoValidationError):
        return Response(validation_error_detail(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, ServiceConflict):
        exc = Conflict(str(exc))
    return drf_exception_handler(exc, context)


class IdFilter(serializers.IntegerField):
    """A row id in a list's query string (``?batch=3``), optional: 0 to ``MAX_ID``. Anything
    else answers 400 naming the parameter, before the database sees it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(min_value=0, max_value=MAX_ID, **kwargs)


def query_id(request, name: str) -> int | None:
    """``?name=`` as an ``IdFilter`` reads it; None when absent or empty."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return None
    try:
        return IdFilter().run_validation(raw)
    except exceptions.ValidationError as exc:
        raise exceptions.ValidationError({name: exc.detail}) from exc


def ids_param(request) -> list[int]:
    """The ``?ids=1,2,3`` of a progress poll as integers, the first 200 of them; a part that is
    not an id (0 to ``MAX_ID``) answers 400."""
    raw = request.query_params.get("ids", "")
    message = f"Must be comma-separated ids: integers from 0 to {MAX_ID}."
    try:
        ids = [int(part) for part in raw.split(",") if part][:200]
    except ValueError as exc:
        raise exceptions.ValidationError({"ids": [message]}) from exc
    if not all(0 <= i <= MAX_ID for i in ids):
        raise exceptions.ValidationError({"ids": [message]})
    return ids
