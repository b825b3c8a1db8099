"""Checks for text and JSON that no database column could hold, shared by every way in.

The request gate (stickerloop.middleware) runs them on every query string, form and JSON body;
code that parses JSON or text it received some other way (a textarea holding JSON, an uploaded
prompt file) runs them on what it parsed. A problem names its field: the path in nested JSON,
e.g. ``answers.note``, empty for the document as a whole.
"""

import json

from django.conf import settings
from django.http import QueryDict

from stickerloop.converters import BIGINT_MAX

NUL_MESSAGE = "Null characters are not allowed."
BIGINT_MIN = -(2**63)
INTEGER_MESSAGE = f"Must be between {BIGINT_MIN} and {BIGINT_MAX}."


class InputProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def depth_message() -> str:
    return f"JSON may nest at most {settings.REQUEST_JSON_MAX_DEPTH} levels."


def check_text(field: str, value: str) -> None:
    """PostgreSQL text cannot hold NUL; psycopg2 raises ValueError (a 500) on one."""
    if "\x00" in value:
        raise InputProblem(field, NUL_MESSAGE)


def check_query_dict(data: QueryDict) -> None:
    for key, values in data.lists():
        check_text(key.replace("\x00", "\\x00"), key)
        for value in values:
            check_text(key, value)


def check_json(data) -> None:
    """Walk parsed JSON without recursion: depth, NUL in keys and strings, integers in bigint."""
    max_depth = settings.REQUEST_JSON_MAX_DEPTH
    stack = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise InputProblem("", depth_message())
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                name = str(key).replace("\x00", "\\x00")
                child_path = f"{path}.{name}" if path else name
                if isinstance(key, str):
                    check_text(child_path, key)
                stack.append((child_path, child, depth + 1))
        elif isinstance(value, str):
            check_text(path, value)
        elif isinstance(value, int) and not BIGINT_MIN <= value <= BIGINT_MAX:
            raise InputProblem(path, INTEGER_MESSAGE)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_loads_checked(text: str | bytes, *, strict: bool = False):
    """``json.loads`` and ``check_json``; JSONDecodeError passes through, too deep is a problem.

    ``strict`` refuses NaN and Infinity with a ValueError, as DRF's JSON parser does."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant if strict else None)
    except RecursionError as exc:
        raise InputProblem("", depth_message()) from exc
    check_json(data)
    return data
