"""Item creation: a single campaign of N items from a selection, through the service.

N sticker candidates of one model version are inserted with bulk SQL (``INSERT ... SELECT
generate_series``) and vacuumed, as candidates are long made before a campaign; then
``campaign_items_from_selection`` (``annotation.services.items``) makes one item per candidate,
set-based, and the seconds of that call, commit included, are the figure. The rows are then
counted: one item and one link per candidate.

The campaign is running while its items are added, as a campaign topped up with a new model's
candidates would be: it holds 10,000 items of another model version beforehand, and one rater
judges them throughout the call, a rating step every 50 ms on a connection of its own. The
steps' p99 and longest wait during the call say whether adding items holds the raters up (the
campaign row is locked against its other writers only, ``campaign_lock``).

    python bench/campaign_items.py [--quick] [--items N]

Default 1,000,000 items; --quick: 10,000 (CI); --items 10000000 is issue 16's size. A size the
disk or the memory cannot hold is refused with a message before anything is made.

One JSON line: {"bench": "campaign_items", "items", "seconds", "items_per_s",
"database_cpu_seconds" (the database backend's CPU during the call, where it runs on this
machine, else null), "bench_cpu_seconds", "candidates_seconds", "database_mb_per_million",
"items_made", "links_made", "rater_steps", "rater_step_p99_ms", "rater_step_max_ms"}.
Target (issue 16): 10,000,000 items in at most 60 s.
"""

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from _common import emit, refuse_unless_it_fits, setup_django
from assignment import percentile

# Per item, on the generous side: measured at 1,000,000, tables and indexes take about 620 bytes
# per item (candidate 290, item 155, link 177); besides them the write-ahead log not yet
# recycled and the sort and materialised ids spilled to temporary files.
_DISK_BYTES_PER_ITEM = 3_000
# PostgreSQL queues the deferred foreign-key checks of every inserted row in memory until the
# commit (three per item, four per candidate in their own transaction): about 1 GiB at
# 10,000,000, with the server's own memory and this process beside it.
_MEMORY_BYTES_FIXED = 1 * 1024**3
_MEMORY_BYTES_PER_ITEM = 300
# The items the rater judges during the call: at a step every 50 ms, enough for 500 s.
_RATED_ITEMS = 10_000
_STEP_EVERY_SECONDS = 0.05


def _refuse_over_the_item_limit(n: int) -> None:
    """The service would refuse the campaign: say so before making the candidates."""
    from django.conf import settings

    if n > settings.CAMPAIGN_MAX_ITEMS:
        sys.exit(
            f"{n:,} items are over the campaign item limit ({settings.CAMPAIGN_MAX_ITEMS:,}); "
            "raise STICKERLOOP_CAMPAIGN_MAX_ITEMS to measure them."
        )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process on this machine (from /proc); None where not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate_meanwhile(campaign_id: int, rater, stop: threading.Event, waits: list[float]) -> None:
    """One rater judging the campaign's items, a step (submit and lease the next) every 50 ms
    until ``stop``; each step's seconds go to ``waits``."""
    from django.db import connection

    from annotation.services.rating import Submission, rating_step

    submission = None
    try:
        # Every step is timed, the first (a lease) and the one under way at ``stop`` too: a
        # step held up by the call returns only once the call commits.
        while True:
            started = time.perf_counter()
            result = rating_step(
                campaign_id=campaign_id, rater=rater, submission=submission, fetch=1
            )
            waits.append(time.perf_counter() - started)
            if stop.wait(_STEP_EVERY_SECONDS):
                break
            [item_id] = result.item_ids
            submission = Submission(
                item_id=item_id,
                client_id=uuid.uuid4(),
                seconds_on_item=1.0,
                answers={"aligned": True},
            )
    finally:
        connection.close()


def make_candidates(n: int, name: str = "bench-model") -> int:
    """``n`` sticker rows of a fresh model version ``name``; returns the version's id."""
    from django.db import connection

    from generation.models import Candidate, ModelVersion

    version = ModelVersion.objects.create(name=name, kind="image", uri="/nonexistent")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Candidate._meta.db_table} (kind, origin, model_version_id, seed,"
            " params, raw_prompt, enhanced_prompt, motion_prompt, file, frames_prefix, width,"
            " height, frame_count, file_size, sha256, device, weak_labels, import_source,"
            " created_at)"
            " SELECT 'sticker', 'generated', %s, g, '{}', 'bench ' || g, '', '',"
            " 'bench/sticker.png', '', 64, 64, 1, 0, repeat('0', 64), '', '{}', '', now()"
            " FROM generate_series(1, %s) g",
            [version.pk, n],
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Candidate._meta.db_table}")
    return version.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 items (CI)")
    parser.add_argument("--items", type=int, default=None)
    args = parser.parse_args()
    n = args.items or (10_000 if args.quick else 1_000_000)
    if n < 1:
        sys.exit("--items must be at least 1.")

    refuse_unless_it_fits(
        f"{n:,} items",
        disk_bytes=n * _DISK_BYTES_PER_ITEM,
        memory_bytes=_MEMORY_BYTES_FIXED + n * _MEMORY_BYTES_PER_ITEM,
    )
    setup_django("bench_campaign_items")
    _refuse_over_the_item_limit(n)
    from django.conf import settings
    from django.db import connection

    from annotation.models import Item, ItemCandidate
    from annotation.services.campaigns import campaign_create, campaign_start
    from annotation.services.items import campaign_items_from_selection
    from stickerloop.services import user_create_with_roles

    rated = make_candidates(_RATED_ITEMS, name="bench-rated")
    started = time.perf_counter()
    version_id = make_candidates(n)
    candidates_seconds = time.perf_counter() - started
    print(f"# {n:,} candidates in {candidates_seconds:.1f} s", file=sys.stderr, flush=True)
    # The campaign holds the rated items besides the N measured, which may be the limit itself.
    settings.CAMPAIGN_MAX_ITEMS = max(settings.CAMPAIGN_MAX_ITEMS, n + _RATED_ITEMS)
    rater = user_create_with_roles(username="bench-rater", password=None, roles=["rater"])
    campaign = campaign_create(
        name="bench", kind="single", preset="alignment", overlap=3, raters=[rater]
    )
    campaign_items_from_selection(campaign=campaign, model_versions=[rated], seed=0)
    campaign_start(campaign=campaign)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        size_before = cursor.fetchone()[0]
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    stop, waits = threading.Event(), []
    rater_thread = threading.Thread(
        target=rate_meanwhile, args=(campaign.pk, rater, stop, waits), daemon=True
    )
    rater_thread.start()

    # On a shared machine the wall time depends on the neighbours; the CPU seconds of the
    # database backend (when it runs here) and of this thread (not the rater's) do much less.
    database_cpu = cpu_seconds(backend)
    own_cpu = time.thread_time()
    started = time.perf_counter()
    try:
        campaign_items_from_selection(campaign=campaign, model_versions=[version_id], seed=0)
    finally:
        stop.set()
    seconds = time.perf_counter() - started
    own_cpu = time.thread_time() - own_cpu
    rater_thread.join()
    if database_cpu is not None:
        database_cpu = round(cpu_seconds(backend) - database_cpu, 2)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        size_after = cursor.fetchone()[0]
    emit(
        {
            "bench": "campaign_items",
            "items": n,
            "seconds": round(seconds, 2),
            "items_per_s": round(n / seconds),
            "database_cpu_seconds": database_cpu,
            "bench_cpu_seconds": round(own_cpu, 2),
            "candidates_seconds": round(candidates_seconds, 2),
            "database_mb_per_million": round((size_after - size_before) / n, 1),
            "items_made": Item.objects.filter(campaign=campaign).count() - _RATED_ITEMS,
            "links_made": ItemCandidate.objects.filter(item__campaign=campaign).count()
            - _RATED_ITEMS,
            "rater_steps": len(waits),
            "rater_step_p99_ms": round(1000 * percentile(waits, 0.99), 1),
            "rater_step_max_ms": round(1000 * max(waits, default=0.0), 1),
        }
    )


if __name__ == "__main__":
    sys.exit(main())
