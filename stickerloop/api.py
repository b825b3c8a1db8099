"""Shared API plumbing: service errors become 4xx answers that name the field and the problem."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from stickerloop.errors import ServiceConflict, validation_error_detail

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


def ids_param(request) -> list[int]:
    """The ``?ids=1,2,3`` of a progress poll as integers, the first 200 of them; a part that is
    not an integer answers 400."""
    raw = request.query_params.get("ids", "")
    try:
        return [int(part) for part in raw.split(",") if part][:200]
    except ValueError as exc:
        raise exceptions.ValidationError({"ids": "Must be comma-separated integers."}) from exc
