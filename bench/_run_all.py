"""Run every benchmark in bench/ (``make bench``), ``--jobs`` at a time, and fail if any fails.

Each running benchmark gets its own Redis database for its Celery workers (``BENCH_BROKER_URL``:
database 14 for the first slot, 13 for the second, …), since two benchmarks on one broker would
take each other's tasks; each already has a scratch PostgreSQL database of its own. Figures
measured two at a time share the machine: CI runs the ``--quick`` sizes so, to check that every
benchmark still runs; measure with one job. Each benchmark's output is printed whole when it
ends, then one line with its wall time and exit status.

    python bench/_run_all.py [--jobs N] [benchmark arguments, e.g. --quick]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

HERE = Path(__file__).resolve().parent
FIRST_BROKER_DATABASE = 14


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))


def run(script: Path, args: list[str], slots: Queue, lock) -> int:
    slot = slots.get()
    try:
        env = {
            **os.environ,
            "BENCH_BROKER_URL": f"redis://127.0.0.1:6379/{FIRST_BROKER_DATABASE - slot}",
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        seconds = time.monotonic() - started
    finally:
        slots.put(slot)
    with lock:
        sys.stdout.write(done.stdout.decode(errors="replace"))
        print(f"# {script.name}: exit {done.returncode} in {seconds:.0f} s", flush=True)
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1)
    options, args = parser.parse_known_args()
    slots: Queue = Queue()
    for slot in range(options.jobs):
        slots.put(slot)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        codes = list(pool.map(lambda s: (s, run(s, args, slots, lock)), benchmarks()))
    failed = [script.name for script, code in codes if code != 0]
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
