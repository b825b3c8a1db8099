"""Curation at scale: 100,000 sticker candidates with 300,000 judgments → build a version →
export it as imagefolder, WebDataset and Parquet on real ``default``-queue workers.

    python bench/export.py [--quick] [--candidates N] [--workers 3]

Set-up (not timed): a scratch PostgreSQL database, small distinct PNGs written straight into the
media folder, and candidates, items and judgments copied in with COPY. Timed:

- build_s: ``dataset_version_build`` of an alignment rule (consensus on the fly, the funnel,
  the manifest rows);
- export_s: from asking for the three formats in one request (``dataset_exports_create``:
  one pass over the manifest and the files for all three, split into parts of at most
  ``DATASET_EXPORT_PART_ENTRIES`` entries, a task each) to all three finished, on real
  ``default``-queue workers (the platform's path: tasks, manifest stream, files read from
  storage and checked, archives written, moved into storage, checksums recorded);
- separate_export_s, for comparison: three requests, one per format, run side by side on
  ``--workers`` worker processes (each its own pass over the files);
- copy_s: ``tar`` of the same PNG files in the same run (the floor).

peak_rss_mb is the largest resident set of this process and of the workers.
Last line: {"bench": "export", "candidates", "judgments", "build_s", "export_s",
"separate_export_s", "bytes",
"peak_rss_mb", "copy_s", "export_over_copy"}. Targets: build_s + export_s <= 60,
peak_rss_mb <= 1000, export_over_copy <= 3.
"""

import argparse
import io
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from _common import (
    emit,
    refuse_unless_it_fits,
    setup_django,
    start_worker,
    stop_worker,
    wait_until,
)

JUDGMENTS_PER_ITEM = 3
RATERS = 30
CANDIDATES_PER_PROMPT = 5

# An estimate per candidate, on the generous side: its PNG takes a 4 KB block on disk, each of
# the three export formats and the floor's tar about 1 KB (512-byte tar headers, padded data),
# PostgreSQL's rows and indexes (candidate, item, three judgments, manifest row) about 2 KB.
DISK_BYTES_PER_CANDIDATE = 12_000


def _png_variants(count: int) -> list[bytes]:
    """A few distinct 32x32 RGBA stickers; each file gets its index in a private chunk below,
    so every file's bytes (and sha256) differ while decoding stays cheap and valid."""
    import numpy as np

    from generation.pipelines import encode_png

    variants = []
    for i in range(count):
        pixels = np.zeros((32, 32, 4), dtype=np.uint8)
        pixels[4:28, 4:28] = (i * 15 % 256, 200 - i * 10, 40 + i * 7, 255)
        pixels[8 + i % 12, 8:24, 3] = 128
        variants.append(encode_png(pixels))
    return variants


def _with_index(png: bytes, index: int) -> bytes:
    chunk_type = b"stLp"
    body = struct.pack(">Q", index)
    chunk = (
        struct.pack(">I", len(body))
        + chunk_type
        + body
        + struct.pack(">I", zlib.crc32(chunk_type + body) & 0xFFFFFFFF)
    )
    return png[:-12] + chunk + png[-12:]  # before IEND


def _copy(table: str, columns: list[str], rows, *, chunk: int = 50_000) -> None:
    """COPY ``rows`` (any iterable) in chunks, so a million rows never sit in memory at once."""
    from django.db import connection

    rows = iter(rows)
    while True:
        buffer = io.StringIO()
        count = 0
        for row in rows:
            buffer.write("\t".join("\\N" if v is None else str(v) for v in row))
            buffer.write("\n")
            count += 1
            if count == chunk:
                break
        if not count:
            return
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def _next_ids(model, count: int) -> range:
    """Reserve ``count`` ids from the table's sequence (rows are then copied in with them)."""
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
            f"FROM generate_series(1, {count})"
        )
        ids = [row[0] for row in cursor.fetchall()]
    return range(ids[0], ids[0] + count) if ids == list(range(ids[0], ids[0] + count)) else ids


def alignment_rule(campaign):
    """The rule both export benches build: aligned candidates with two judgments or more."""
    from training_bridge.rules import dataset_rule_create

    return dataset_rule_create(
        values={
            "name": "bench alignment",
            "purpose": "alignment",
            "campaigns": [campaign],
            "conditions": [{"question": "aligned", "labels": [True], "min_confidence": 0.6}],
            "min_judgments": 2,
            "per_prompt_cap": 4,
            "validation_fraction": 0.05,
        }
    )


def populate(n: int, media_root: Path) -> tuple[object, int]:
    """Candidates (files and rows), one alignment campaign, items and judgments."""
    import random

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from annotation.models import (
        Campaign,
        CampaignMembership,
        Item,
        ItemCandidate,
        Judgment,
    )
    from annotation.schema import normalise_schema
    from generation.models import Candidate, ModelVersion, Prompt, PromptSet
    from generation.pipelines import sha256_hex

    rng = random.Random(0)
    now = timezone.now().isoformat()
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench-rater-{i}", password="!") for i in range(RATERS)]
    )
    model = ModelVersion.objects.create(name="bench-base", kind="image", uri="/bench")
    prompt_set = PromptSet.objects.create(name="bench")
    n_prompts = max(1, n // CANDIDATES_PER_PROMPT)
    # (pk, text) only: 200,000 Prompt instances would hold about 200 MB of the bench's memory.
    prompts = []
    for start in range(0, n_prompts, 5000):
        prompts.extend(
            (p.pk, p.text)
            for p in Prompt.objects.bulk_create(
                [
                    Prompt(
                        prompt_set=prompt_set, position=i, text=f"a sticker of thing {i}, smiling"
                    )
                    for i in range(start, min(start + 5000, n_prompts))
                ]
            )
        )
    variants = _png_variants(16)
    folder = media_root / "candidates" / "bench"

    def candidate_rows():
        """Each candidate's file is written as its row is copied: rows are made on demand."""
        for i in range(n):
            data = _with_index(variants[i % len(variants)], i)
            key = f"candidates/bench/{i // 1000:03d}/{i}.png"
            if i % 1000 == 0:
                (folder / f"{i // 1000:03d}").mkdir(parents=True, exist_ok=True)
            with open(media_root / key, "wb") as fh:
                fh.write(data)
            prompt_id, prompt_text = prompts[i % n_prompts]
            yield (
                (
                    "sticker",
                    "generated",
                    model.pk,
                    prompt_id,
                    i,
                    "{}",
                    prompt_text,
                    "",
                    "",
                    key,
                    "",
                    32,
                    32,
                    1,
                    len(data),
                    sha256_hex(data),
                    "",
                    "{}",
                    "",
                    now,
                )
            )

    schema = normalise_schema(
        [
            {"key": "aligned", "type": "binary", "label": "Aligned?"},
            {"key": "quality", "type": "likert", "label": "Quality"},
        ],
        kind="single",
    )
    with transaction.atomic():
        candidate_ids = _next_ids(Candidate, n)
        _copy(
            Candidate._meta.db_table,
            [
                "id",
                "kind",
                "origin",
                "model_version_id",
                "prompt_id",
                "seed",
                "params",
                "raw_prompt",
                "enhanced_prompt",
                "motion_prompt",
                "file",
                "frames_prefix",
                "width",
                "height",
                "frame_count",
                "file_size",
                "sha256",
                "device",
                "weak_labels",
                "import_source",
                "created_at",
            ],
            ((cid, *row) for cid, row in zip(candidate_ids, candidate_rows(), strict=True)),
        )
        campaign = Campaign.objects.create(
            name="bench-align",
            kind="single",
            status="running",
            question_schema=schema,
            overlap=JUDGMENTS_PER_ITEM,
            max_overlap=JUDGMENTS_PER_ITEM,
        )
        CampaignMembership.objects.bulk_create(
            [CampaignMembership(campaign=campaign, rater=u) for u in users]
        )
        item_ids = _next_ids(Item, n)
        _copy(
            Item._meta.db_table,
            [
                "id",
                "campaign_id",
                "is_gold",
                "overlap_target",
                "judgment_count",
                "leased_count",
                "group_key",
                "created_at",
            ],
            (
                (iid, campaign.pk, "f", JUDGMENTS_PER_ITEM, JUDGMENTS_PER_ITEM, 0, "", now)
                for iid in item_ids
            ),
        )
        _copy(
            ItemCandidate._meta.db_table,
            ["item_id", "candidate_id", "position", "side"],
            ((iid, cid, 0, "") for iid, cid in zip(item_ids, candidate_ids, strict=True)),
        )

        def judgment_rows():
            for iid in item_ids:
                for rater in rng.sample(users, JUDGMENTS_PER_ITEM):
                    aligned = "true" if rng.random() < 0.8 else "false"
                    answers = f'{{"aligned": {aligned}, "quality": {rng.randint(2, 5)}}}'
                    yield (
                        iid,
                        rater.pk,
                        campaign.pk,
                        answers,
                        3.0,
                        uuid.uuid4(),
                        "f",
                        "",
                        "f",
                        now,
                    )

        _copy(
            Judgment._meta.db_table,
            [
                "item_id",
                "rater_id",
                "campaign_id",
                "answers",
                "seconds_on_item",
                "client_id",
                "skipped",
                "skip_reason",
                "excluded",
                "created_at",
            ],
            judgment_rows(),
        )
    with __import__("django").db.connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return campaign, n * JUDGMENTS_PER_ITEM


def wait_for_exports(ids: list[int]) -> None:
    """Until every export in ``ids`` has ended. One raw query per poll: the ORM's would cost
    the exports being timed about 1 ms of CPU per poll (measured), on the same two cores."""
    from django.db import connection

    def ended() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM training_bridge_datasetexport "
                "WHERE id = ANY(%s) AND status IN ('succeeded', 'failed')",
                [ids],
            )
            return cursor.fetchone()[0] == len(ids)

    wait_until(ended, timeout=1800, interval=0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 candidates, for CI")
    parser.add_argument("--candidates", type=int, default=None)
    # One worker per export, so the three run side by side as they would on a deployment with
    # that many default-queue processes (on 2 cores they share the CPUs).
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=10_000)
    args = parser.parse_args()
    n = args.candidates or (3_000 if args.quick else 100_000)
    refuse_unless_it_fits(f"{n:,} candidates", disk_bytes=n * DISK_BYTES_PER_CANDIDATE)

    # Scratch space for the exports beside this run's media, not in a shared /tmp/dataset_work.
    work_dir = tempfile.mkdtemp(prefix="stickerloop-bench-export-work-")
    os.environ["STICKERLOOP_DATASET_WORK_DIR"] = work_dir
    env = setup_django("bench_export")
    env["STICKERLOOP_DATASET_WORK_DIR"] = work_dir
    media_root = Path(env["STICKERLOOP_MEDIA_ROOT"])
    from training_bridge.exports.create import dataset_export_create, dataset_exports_create
    from training_bridge.models import AuditEvent, DatasetExport
    from training_bridge.versions import dataset_version_build, dataset_version_publish

    campaign, n_judgments = populate(n, media_root)
    rule = alignment_rule(campaign)

    started = time.perf_counter()
    version, _ = dataset_version_build(rule=rule)
    build_s = time.perf_counter() - started
    dataset_version_publish(version=version)

    logs = Path(tempfile.mkdtemp(prefix="stickerloop-bench-export-"))
    workers = [
        start_worker("default", env, logs / f"worker-{i}.log", "-n", f"bench-export-{i}@%h")
        for i in range(args.workers)
    ]
    try:
        # The clock starts once every worker answers: their start-up is not an export.
        from stickerloop.celery import app

        wait_until(
            lambda: len(app.control.ping(timeout=0.5)) >= args.workers, timeout=120, interval=0.5
        )
        # Set-up wrote 100,000 files and the database: flush them now, so the kernel's
        # write-back of set-up does not land in the timed exports (the copy runs after it too).
        os.sync()
        # The platform's way to export a version in several formats: one request, one pass.
        started = time.perf_counter()
        together = dataset_exports_create(
            version=version,
            export_formats=["imagefolder", "webdataset", "parquet"],
            shard_size=args.shard_size,
        )
        ids = [e.pk for e in together]
        wait_for_exports(ids)
        export_s = time.perf_counter() - started
        # For comparison: three separate requests, run side by side on the workers.
        started = time.perf_counter()
        separate = [
            dataset_export_create(version=version, export_format="imagefolder"),
            dataset_export_create(
                version=version, export_format="webdataset", shard_size=args.shard_size
            ),
            dataset_export_create(version=version, export_format="parquet"),
        ]
        wait_for_exports([e.pk for e in separate])
        separate_s = time.perf_counter() - started
    finally:
        for worker in workers:
            stop_worker(worker)
    failed = list(
        DatasetExport.objects.filter(pk__in=ids + [e.pk for e in separate], status="failed").values(
            "format", "error"
        )
    )
    if failed:
        sys.exit(f"exports failed: {failed}")
    total_bytes = sum(DatasetExport.objects.filter(pk__in=ids).values_list("size_bytes", flat=True))
    # CPU seconds of the worker that wrote each (recorded by the service in the audit log);
    # the one pass reports its own, once.
    cpu = {
        event.export.format: event.details.get("cpu_seconds")
        for event in AuditEvent.objects.filter(
            export_id__in=[e.pk for e in separate], action="export_succeeded"
        ).select_related("export")
    }
    cpu["one_pass"] = (
        AuditEvent.objects.filter(export_id=ids[0], action="export_succeeded")
        .values_list("details__cpu_seconds", flat=True)
        .get()
    )

    # The floor: tar the same files (the PNGs the manifest names), in the same run.
    keys = list(version.entries.order_by("position").values_list("file_key", flat=True))
    listing = logs / "files.txt"
    listing.write_text("\n".join(keys) + "\n")
    started = time.perf_counter()
    subprocess.run(
        ["tar", "cf", str(logs / "copy.tar"), "-C", str(media_root), "-T", str(listing)], check=True
    )
    copy_s = time.perf_counter() - started
    for folder in (logs, media_root, Path(work_dir)):
        shutil.rmtree(folder, ignore_errors=True)

    peak = (
        max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        / 1024
    )
    emit(
        {
            "bench": "export",
            "candidates": n,
            "judgments": n_judgments,
            "entries": version.entry_count,
            "workers": args.workers,
            "build_s": round(build_s, 3),
            "export_s": round(export_s, 3),
            "separate_export_s": round(separate_s, 3),
            "export_cpu_s": cpu,
            "bytes": total_bytes,
            "peak_rss_mb": round(peak, 1),
            "copy_s": round(copy_s, 3),
            "export_over_copy": round(export_s / copy_s, 3),
        }
    )


if __name__ == "__main__":
    sys.exit(main())
