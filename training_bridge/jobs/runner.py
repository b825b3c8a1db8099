"""Running a recipe in a child process and watching its output (no database here).

The child is its own process group (so a cancel can stop it and anything it started) and is
tied to the thread that started it with PR_SET_PDEATHSIG, so a worker killed with SIGKILL does
not leave a training process behind that would keep writing checkpoints while another worker
resumes the job. Its stdout and stderr come through one pipe; a reader thread feeds lines to
the watching loop, which hands them over in batches to ``on_output`` at most every
``flush_seconds`` (and at least that often, so heartbeats and cancel checks happen while the
child is silent, e.g. loading a model).
"""

from __future__ import annotations

import collections
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training_bridge.recipes.progress import parse_line

PR_SET_PDEATHSIG = 1
TAIL_LINES = 200
TAIL_CHARS = 16_000
# After SIGTERM the recipe gets this long to exit before SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Batch:
    """What the child printed since the last hand-over: parsed events and all raw lines."""

    events: list[dict] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """How the child ended.

    Attributes:
        returncode: the exit status; negative for a signal (-9: SIGKILL, e.g. the OOM killer).
        stopped: the watcher stopped it because ``on_output`` said so (a cancel).
        events: every event it printed.
        tail: its last lines of output.
        pid: its process id.
    """

    returncode: int
    stopped: bool
    events: list[dict]
    tail: str
    pid: int

    @property
    def error_event(self) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == "error"), None)

    @property
    def done_event(self) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == "done"), None)


def describe_exit(returncode: int) -> str:
    """A person's reading of an exit status, e.g. "killed by SIGKILL (out of memory?)"."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


def tail_text(lines: collections.deque[str]) -> str:
    return "\n".join(lines)[-TAIL_CHARS:]


def stop_process_group(proc: subprocess.Popen, *, grace: float = TERMINATE_GRACE_SECONDS) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=30)


def run_watched(
    command: list[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    log_path: Path,
    on_output: Callable[[Batch], bool],
    on_start: Callable[[int], None] | None = None,
    flush_seconds: float = 0.5,
) -> Outcome:
    """Run ``command`` to its end, appending its output to ``log_path``.

    ``on_output(batch)`` is called with each batch of output (possibly empty, at least every
    ``flush_seconds``); when it returns False the child's group is stopped (SIGTERM, then
    SIGKILL). ``on_start(pid)`` is called once the child runs. An exception from the callbacks
    stops the child too and propagates.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines_queue: queue.Queue[str | None] = queue.Queue()
    proc = subprocess.Popen(
        command,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            lines_queue.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
        lines_queue.put(None)

    reader = threading.Thread(target=read, name=f"recipe-{proc.pid}-reader", daemon=True)
    reader.start()
    events: list[dict] = []
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    stopped = False
    finished_reading = False
    try:
        if on_start is not None:
            on_start(proc.pid)
        with log_path.open("a", encoding="utf-8") as log:
            while not finished_reading:
                batch = Batch()
                deadline = time.monotonic() + flush_seconds
                while True:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    try:
                        line = lines_queue.get(timeout=timeout)
                    except queue.Empty:
                        break
                    if line is None:
                        finished_reading = True
                        break
                    batch.lines.append(line)
                    event = parse_line(line)
                    if event is not None:
                        batch.events.append(event)
                if batch.lines:
                    log.write("".join(f"{line}\n" for line in batch.lines))
                    log.flush()
                    tail.extend(batch.lines)
                events.extend(batch.events)
                if not stopped and not on_output(batch):
                    stopped = True
                    stop_process_group(proc)
        returncode = proc.wait()
    finally:
        stop_process_group(proc)
        reader.join(timeout=5)
    return Outcome(
        returncode=returncode, stopped=stopped, events=events, tail=tail_text(tail), pid=proc.pid
    )
