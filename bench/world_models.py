"""Rebuilding the sticker world's default models bit for bit.

Full size runs ``python -m training_bridge.recipes.world_models`` into a scratch folder (the
command that made the committed weights) and compares every file with the committed manifest:
the claim is that one command rebuilds them identically, on one thread per process, in at most
60 minutes on the 2-core machine. ``--quick`` builds the tiny quick scale twice and compares the
two builds, so CI checks determinism without the hour.

    python bench/world_models.py [--quick]

Last line: {"bench": "world_models", "scale": "full"|"quick", "seconds": …, "files": N,
"identical_files": N, "identical": true|false}.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit


def build(out: Path, quick: bool) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "training_bridge.recipes.world_models", "--out", str(out)]
        + (["--quick"] if quick else []),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="world-models-"))
    try:
        seconds = build(scratch / "a", args.quick)
        if args.quick:
            build(scratch / "b", True)
            reference = json.loads((scratch / "b" / "manifest.json").read_text())["files"]
        else:
            committed = ROOT / "generation" / "world" / "weights" / "manifest.json"
            reference = json.loads(committed.read_text())["files"]
        built = json.loads((scratch / "a" / "manifest.json").read_text())["files"]
        same = sum(built.get(name) == digest for name, digest in reference.items())
        identical = same == len(reference) == len(built)
        emit(
            {
                "bench": "world_models",
                "scale": "quick" if args.quick else "full",
                "seconds": round(seconds, 1),
                "files": len(reference),
                "identical_files": same,
                "identical": identical,
            }
        )
        if not identical:
            sys.exit("the rebuilt models differ from the reference")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
