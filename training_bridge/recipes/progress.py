"""Progress as JSON lines on stdout, for whoever launched the run to parse (no torch).

Every line a run prints on stdout is one JSON object with an ``event`` key and a ``time``
(Unix seconds); libraries log to stderr. Events, in order:

- ``start``: ``recipe``, ``step`` (where this process starts; > 0 after a resume), ``total``,
  ``resumed_from`` (checkpoint step or null), ``load_s`` (seconds to load the model and data),
  ``device``, ``num_processes``, ``datasets`` ([{role, path, manifest_sha256, entries}]),
  ``teacher_counts`` ({teacher: entries}, distill_student only).
- ``progress``: ``step``, ``total``, ``loss`` ({role: mean loss since the previous line}),
  ``seconds_per_step``, ``eta_s``, ``lr``.
- ``checkpoint``: ``step``, ``path``.
- ``done``: ``step``, ``total``, ``output_dir``, ``metrics``.
- ``error``: ``message``, ``type`` (the exception class), ``field`` (for argument errors).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

EVENTS = ("start", "progress", "checkpoint", "done", "error")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def format_event(event: str, **fields: Any) -> str:
    """One JSON line; ``time`` (Unix seconds) is added, so a reader can time the phases."""
    if event not in EVENTS:
        raise ValueError(f"`event` has to be one of {', '.join(EVENTS)} but is {event!r}.")
    payload = {"event": event, "time": round(time.time(), 3), **_finite(fields)}
    return json.dumps(payload, separators=(",", ":"))


def emit(event: str, *, stream: IO[str] | None = None, **fields: Any) -> None:
    """Print one event line and flush, so a parent reading the pipe sees it at once."""
    out = stream or sys.stdout
    out.write(format_event(event, **fields) + "\n")
    out.flush()


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """The event on ``line``, or None when the line is not one (a library's stray output)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text.startswith('{"event"'):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("event") not in EVENTS:
        return None
    return data
