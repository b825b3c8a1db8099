"""How the OpenAPI schema is generated: component names and the error answers every API shares."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The body of 401, 403, 404, 409 and 429 answers (DRF's ``{"detail": ...}``)."""

    detail = serializers.CharField()


@extend_schema_serializer(component_name="ValidationError")
class ValidationErrorSerializer(serializers.Serializer):
    """The body of a 400 answer: the messages for each field, ``non_field_errors`` for the
    request as a whole, or ``detail`` for input refused before any serializer saw it."""

    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)
    detail = serializers.CharField(required=False)


ERROR_RESPONSES_ANY = {401: ErrorSerializer, 403: ErrorSerializer}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, with two rules kept here rather than on every API class.

    Nested serializers are named after their API class: ``MeApi.OutputSerializer`` becomes the
    component ``MeOutput``. Every API class nests an ``InputSerializer`` and an
    ``OutputSerializer``; named by class alone they would all be "Input" and "Output", and the
    generator would document one API's shape for all of them.

    Each operation also documents the errors it can answer: 400 where it takes a body or query
    parameters, 401 and 403 unless anyone may call it, 404 where the path names an object, 409
    for every write (a service refuses an action the target's state forbids; the schema cannot
    tell which writes never do). An operation's own ``responses`` win over these.
    """

    def get_serializer_name(self, serializer, direction):
        outer, _, nested = type(serializer).__qualname__.rpartition(".")
        if outer and "<locals>" not in outer:
            return outer.rpartition(".")[2].removesuffix("Api") + nested.removesuffix("Serializer")
        return super().get_serializer_name(serializer, direction)

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        for code, serializer in self._error_responses().items():
            bodies.setdefault(
                str(code), self._get_response_for_code(serializer, str(code), direction=direction)
            )
        return bodies

    def _error_responses(self) -> dict:
        errors = {}
        unsafe = self.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe or any(p["in"] == "query" for p in self._get_parameters()):
            errors[400] = ValidationErrorSerializer
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            errors.update(ERROR_RESPONSES_ANY)
        if "{" in self.path:
            errors[404] = ErrorSerializer
        if unsafe and self.method != "DELETE":
            errors[409] = ErrorSerializer
        return errors
