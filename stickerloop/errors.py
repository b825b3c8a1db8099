"""Errors that services raise, free of any web framework: the API layer (``stickerloop.api``)
translates them into HTTP answers, and pages into messages."""

from django.core.exceptions import ValidationError


class ServiceConflict(Exception):
    """Raised by services when the target's state forbids the action (answered with 409)."""


def validation_error_detail(error: ValidationError) -> dict | list:
    """A validation error as ``{field: [messages]}``, or under ``non_field_errors``."""
    if hasattr(error, "error_dict"):
        return {
            field: [m for e in errors for m in e.messages]
            for field, errors in error.error_dict.items()
        }
    return {"non_field_errors": error.messages}
