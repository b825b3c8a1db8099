"""Streaming dataset builds: build and export a version of N candidates with 3 judgments each,
and the peak memory of every process that takes part.

    python bench/dataset_build.py [--quick] [--candidates N]

Set-up (not timed) is ``bench/export.py``'s: a scratch database, small distinct PNGs in the
media folder, candidates, items and judgments copied in with COPY, in chunks. Timed:

- build_s: ``dataset_version_build`` of an alignment rule, in a fresh process of its own (as a
  web process runs it), whose peak resident set is reported as ``build``;
- export_s: imagefolder, WebDataset and Parquet in one request, on one real ``default``-queue
  worker, whose peak resident set (``VmHWM``) is reported as ``worker``;
- tar_s: ``tar`` of the same PNG files (the floor), and export_over_tar.

Last line: {"bench": "dataset_build", "candidates", "judgments", "entries", "build_s",
"export_s", "tar_s", "export_over_tar", "manifest_sha256", "peak_rss_mb": {"bench", "build",
"worker"}}. Targets at 1,000,000 candidates: every peak at most 1000 MB, build_s + export_s at
most 600, export_over_tar at most 3.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ROOT,
    emit,
    peak_rss_mb,
    refuse_unless_it_fits,
    setup_django,
    start_worker,
    stop_worker,
    vm_hwm_mb,
    wait_until,
)
from export import DISK_BYTES_PER_CANDIDATE, alignment_rule, populate, wait_for_exports

# The bench, the build and the worker each stay under 1 GB at 1,000,000 candidates, with
# PostgreSQL's working memory beside them.
_MEMORY_BYTES = 4 * 1024**3


def build_in_child(rule_id: int, env: dict) -> dict:
    """Run the build in a fresh process and return what it prints: the version, its seconds and
    its own peak resident set (the set-up above does not count against it)."""
    done = subprocess.run(
        [sys.executable, __file__, "--build-rule", str(rule_id)],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _build(rule_id: int) -> None:
    import django

    django.setup()
    from training_bridge.models import DatasetRule
    from training_bridge.versions import dataset_version_build

    rule = DatasetRule.objects.get(pk=rule_id)
    started = time.perf_counter()
    version, _ = dataset_version_build(rule=rule)
    build_s = time.perf_counter() - started
    emit({"version": version.pk, "build_s": round(build_s, 3), "peak_rss_mb": peak_rss_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 candidates, for CI")
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--build-rule", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_rule is not None:
        _build(args.build_rule)
        return
    n = args.candidates or (2_000 if args.quick else 1_000_000)
    refuse_unless_it_fits(
        f"{n:,} candidates", disk_bytes=n * DISK_BYTES_PER_CANDIDATE, memory_bytes=_MEMORY_BYTES
    )

    work_dir = tempfile.mkdtemp(prefix="stickerloop-bench-build-work-")
    os.environ["STICKERLOOP_DATASET_WORK_DIR"] = work_dir
    env = setup_django("bench_dataset_build")
    env["STICKERLOOP_DATASET_WORK_DIR"] = work_dir
    media_root = Path(env["STICKERLOOP_MEDIA_ROOT"])
    from training_bridge.exports.create import dataset_exports_create
    from training_bridge.models import DatasetExport, DatasetVersion
    from training_bridge.versions import dataset_version_publish

    campaign, n_judgments = populate(n, media_root)
    rule = alignment_rule(campaign)
    built = build_in_child(rule.pk, env)
    version = dataset_version_publish(version=DatasetVersion.objects.get(pk=built["version"]))

    logs = Path(tempfile.mkdtemp(prefix="stickerloop-bench-build-"))
    worker = start_worker("default", env, logs / "worker.log", "-n", "bench-build@%h")
    try:
        from stickerloop.celery import app

        wait_until(lambda: len(app.control.ping(timeout=0.5)) >= 1, timeout=120, interval=0.5)
        os.sync()
        started = time.perf_counter()
        exports = dataset_exports_create(
            version=version, export_formats=["imagefolder", "webdataset", "parquet"]
        )
        wait_for_exports([e.pk for e in exports])
        export_s = time.perf_counter() - started
        worker_peak = vm_hwm_mb(worker.pid)
    finally:
        stop_worker(worker)
    failed = list(
        DatasetExport.objects.filter(pk__in=[e.pk for e in exports], status="failed").values(
            "format", "error"
        )
    )
    if failed:
        sys.exit(f"exports failed: {failed}")

    # The floor: tar the files the manifest names, listed without holding them all at once.
    listing = logs / "files.txt"
    with open(listing, "w") as fh:
        for key in (
            version.entries.order_by("position")
            .values_list("file_key", flat=True)
            .iterator(chunk_size=10_000)
        ):
            fh.write(key + "\n")
    started = time.perf_counter()
    subprocess.run(
        ["tar", "cf", str(logs / "copy.tar"), "-C", str(media_root), "-T", str(listing)], check=True
    )
    tar_s = time.perf_counter() - started
    for folder in (logs, media_root, Path(work_dir)):
        shutil.rmtree(folder, ignore_errors=True)

    emit(
        {
            "bench": "dataset_build",
            "candidates": n,
            "judgments": n_judgments,
            "entries": version.entry_count,
            "build_s": built["build_s"],
            "export_s": round(export_s, 3),
            "tar_s": round(tar_s, 3),
            "export_over_tar": round(export_s / tar_s, 3),
            "manifest_sha256": version.manifest_sha256,
            "peak_rss_mb": {
                "bench": peak_rss_mb(),
                "build": built["peak_rss_mb"],
                "worker": worker_peak,
            },
        }
    )


if __name__ == "__main__":
    sys.exit(main())
