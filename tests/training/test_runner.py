"""The subprocess runner on small Python children: events parsed, a kill read as such, a stop
asked for by the watcher ends the child's whole process group."""

import sys
import textwrap
from pathlib import Path

from tests.conftest import wait_for
from training_bridge.jobs.runner import describe_exit, run_watched


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_events_and_log_lines_are_handed_over_and_a_sigkill_reads_as_out_of_memory(tmp_path):
    batches = []
    outcome = run_watched(
        _child("""
            import json, os, signal, sys
            print("loading weights")
            print(json.dumps({"event": "progress", "step": 1, "loss": {"train": 0.5}}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """),
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "run.log",
        on_output=lambda batch: batches.append(batch) or True,
        flush_seconds=0.1,
    )
    assert outcome.returncode == -9 and not outcome.stopped
    assert [e["step"] for e in outcome.events] == [1]
    assert outcome.tail.splitlines()[0] == "loading weights"
    assert (tmp_path / "run.log").read_text().startswith('loading weights\n{"event"')
    assert sum(len(b.lines) for b in batches) == 2
    assert describe_exit(outcome.returncode) == "was killed by SIGKILL (out of memory?)"
    assert describe_exit(3) == "exited with status 3"


def test_a_stop_from_the_watcher_ends_the_child_and_its_children(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    outcome = run_watched(
        _child(f"""
            import subprocess, sys, time
            grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            open({str(pid_file)!r}, "w").write(str(grandchild.pid))
            print("started", flush=True)
            time.sleep(600)
        """),
        cwd=tmp_path,
        env={},
        log_path=tmp_path / "run.log",
        on_output=lambda batch: "started" not in batch.lines,
        flush_seconds=0.1,
    )
    assert outcome.stopped and outcome.returncode == -15
    grandchild = int(pid_file.read_text())
    wait_for(lambda: not _alive(grandchild), timeout=10, message="the grandchild survived")


def _alive(pid: int) -> bool:
    """Running (a zombie has exited; it only waits to be reaped)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
