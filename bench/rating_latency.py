"""Key-to-next-item latency in a real browser, with the server under load.

One rater in Debian's Chromium (Playwright, headless) judges by keyboard: half the judgments on
a single-sticker campaign (``y``, Enter), half on a best-of-N campaign of three 8-frame
animations per item, looping, with their source stickers (``y n y``, ``1``, Enter). Meanwhile
R HTTP raters (``bench/assignment.py``'s token-authenticated load generator, on its own
campaign) submit and lease on the same gunicorn site as fast as they can.

Measured inside the page, with a script Playwright adds before the screen's own:

- latency: from the Enter keydown event (its ``timeStamp``, on the ``performance.now()`` clock)
  to the next item's media painted: once the new item is on the stage, every ``img`` in it has
  been decoded (``img.decode()``) and the next ``requestAnimationFrame`` has come, its timestamp;
- long tasks: the Long Tasks API's entries (``PerformanceObserver``, type ``longtask``: tasks of
  more than 50 ms on the main thread) from the first judgment to the last, animations looping.

The rater pauses ``--think-ms`` on each item before answering (a person looks before pressing):
the screen's prefetch buffer refills meanwhile, as it does for a person, who takes seconds.
Stickers are 256 px PNGs; an animation is shown from its frame strip (its 8 frames side by
side in one PNG, stored with the frames as generation stores it), so a best-of-N item costs
six image requests (three strips, three sources). Every item's media have URLs of their own
(per-item grants), so the browser fetches and decodes each item's media anew.

    python bench/rating_latency.py [--quick] [--judgments N] [--raters R] [--think-ms T]

Full size: 200 judgments with 32 loading raters; --quick: 20 judgments, 4 raters.
One JSON line: {"bench": "rating_latency", "judgments", "raters_loading", "think_ms", "p50_ms",
"p95_ms", "p99_ms", "max_ms", "sticker_p95_ms", "best_of_n_p95_ms", "shown_p95_ms",
"waited_for_items", "longest_task_ms", "long_tasks_over_50ms", "load_judgments_per_s",
"load_next_p99_ms", "browser_judgments_stored", "over_assigned", "duplicate_views", "lost"}.
shown_p95_ms is the part up to the new item on the stage (its elements in place), before its
media are decoded: the screen shows the next item at once, and where its media have not all
arrived yet, the rest of the latency is their fetch. waited_for_items counts the judgments after
which the prefetch buffer was empty ("Loading the next item…"). On stderr, the judgments over
50 ms.
Target: p95_ms <= 50 and long_tasks_over_50ms == 0.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import emit, free_port, refuse_unless_it_fits, setup_django
from assignment import (
    DISK_BYTES_FIXED,
    DISK_BYTES_PER_ITEM,
    Client,
    check_database,
    create_campaign,
    percentile,
    rater_loop,
    start_site,
    stop_site,
    wait_until_up,
    warm_up,
)

SIZE = 256  # px, stickers and frames
FRAMES = 8
TEACHERS = 3
DISTINCT = 16  # distinct pictures; each candidate still has a URL (and a decode) of its own
PASSWORD = "bench rater, not a real account"

# In the page before the screen's own scripts. A capture listener on window runs before the
# screen's keydown listener on document; the MutationObserver's callback runs once the screen's
# handler has put the next item on the stage (a microtask after it), so the new imgs are there.
PROBE = """
(() => {
  const probe = { samples: [], longTasks: [], since: Infinity };
  window.__latency = probe;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) probe.longTasks.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  let pending = null;
  window.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const stage = document.getElementById("stage");
    pending = { start: e.timeStamp, from: stage ? stage.dataset.item : "", waited: false };
  }, true);
  document.addEventListener("DOMContentLoaded", () => {
    const stage = document.getElementById("stage");
    if (!stage) return;
    new MutationObserver(() => {
      if (!pending || stage.dataset.item === pending.from) return;
      if (stage.dataset.item === "") {
        pending.waited = true; // the prefetch buffer was empty: "Loading the next item…"
        return;
      }
      const p = pending;
      pending = null;
      const shown = performance.now();
      const imgs = Array.from(stage.querySelectorAll("img"));
      Promise.all(imgs.map((img) => img.decode().catch(() => undefined))).then(() =>
        requestAnimationFrame((t) => probe.samples.push({
          ms: t - p.start, shown_ms: shown - p.start, images: imgs.length, waited: p.waited,
        })),
      );
    }).observe(stage, { attributes: true, attributeFilter: ["data-item"] });
  });
})();
"""


def create_rating_campaigns(per_campaign: int) -> tuple[str, int, int]:
    """A rater who logs in with a password, a running single-sticker campaign and a running
    best-of-N campaign of ``per_campaign`` items each, both with overlap 1."""
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotation.services.campaigns import campaign_create, campaign_start
    from annotation.services.items import campaign_items_add
    from generation.models import Candidate, ModelKind, ModelVersion
    from generation.pipelines import encode_png, sha256_hex
    from generation.services.strips import frame_strip_ensure
    from stickerloop.services import user_create_with_roles
    from tests.factories import sticker_pixels, stored_animation

    user = user_create_with_roles(username="bench-browser", password=PASSWORD, roles=["rater"])
    image_model = ModelVersion.objects.create(name="bench-stickers", kind="image", uri="/none")
    teachers = [
        ModelVersion.objects.create(
            name=f"bench-teacher-{t}", kind=ModelKind.ANIMATION, uri="/none"
        )
        for t in range(TEACHERS)
    ]
    pictures = []
    for k in range(DISTINCT):
        data = encode_png(sticker_pixels(k, SIZE))
        key = default_storage.save(f"bench/latency/sticker-{k}.png", ContentFile(data))
        pictures.append((key, data))

    def stickers(first_seed: int, n: int) -> list[Candidate]:
        return Candidate.objects.bulk_create(
            [
                Candidate(
                    kind="sticker",
                    model_version=image_model,
                    seed=first_seed + i,
                    raw_prompt=f"a sticker, number {first_seed + i}",
                    file=pictures[i % DISTINCT][0],
                    width=SIZE,
                    height=SIZE,
                    file_size=len(pictures[i % DISTINCT][1]),
                    sha256=sha256_hex(pictures[i % DISTINCT][1]),
                )
                for i in range(n)
            ]
        )

    single = campaign_create(
        name="latency: stickers", kind="single", preset="alignment", raters=[user]
    )
    campaign_items_add(
        campaign=single, candidate_groups=[[c] for c in stickers(0, per_campaign)], seed=7
    )
    sources = stickers(per_campaign, per_campaign)
    # The frames of DISTINCT animations per teacher are written once; the other animations
    # name the same files (their URLs still differ, per item and position).
    written = {
        (t, k): stored_animation(
            teachers[t],
            sources[k],
            seed=0,
            frames=[
                np.roll(sticker_pixels(100 * t + k, SIZE), 8 * f, axis=1) for f in range(FRAMES)
            ],
            key=f"bench/latency/anim-{t}-{k}.webp",
            motion_prompt="slides right",
            motion_score=0.2,
        )
        for t in range(TEACHERS)
        for k in range(min(DISTINCT, per_campaign))
    }
    # Generation stores an animation's strip with its frames; the factory stores frames only.
    for animation in written.values():
        frame_strip_ensure(frames_prefix=animation.frames_prefix, frame_count=FRAMES)
    copies = Candidate.objects.bulk_create(
        [
            Candidate(
                kind="animation",
                model_version=teachers[t],
                source=source,
                seed=0,
                raw_prompt=source.raw_prompt,
                motion_prompt="slides right",
                motion_score=0.2,
                file=written[(t, i % DISTINCT)].file,
                frames_prefix=written[(t, i % DISTINCT)].frames_prefix,
                width=SIZE,
                height=SIZE,
                frame_count=FRAMES,
                file_size=written[(t, i % DISTINCT)].file_size,
                sha256=written[(t, i % DISTINCT)].sha256,
            )
            for i, source in enumerate(sources[DISTINCT:], start=DISTINCT)
            for t in range(TEACHERS)
        ]
    )
    groups = [
        [written[(t, i)] for t in range(TEACHERS)] for i in range(min(DISTINCT, per_campaign))
    ]
    groups += [copies[j : j + TEACHERS] for j in range(0, len(copies), TEACHERS)]
    best = campaign_create(name="latency: teachers", kind="best_of_n", raters=[user])
    campaign_items_add(campaign=best, candidate_groups=groups, seed=7)
    for campaign in (single, best):
        campaign_start(campaign=campaign)
    return user.username, single.pk, best.pk


def judge(page, count: int, keys: list[str], think_s: float) -> tuple[list[dict], list[float]]:
    """``count`` judgments by keyboard on the screen already open: ``keys`` then Enter, each
    after ``think_s`` on the item; the page's samples (one per Enter) and the durations of the
    long tasks from the first judgment on."""
    page.wait_for_function("() => document.getElementById('stage').dataset.item !== ''")
    # The rater studies the first item while the screen fetches the next ones (a person takes
    # seconds on it): measuring starts once the next items are leased and their media loaded.
    page.wait_for_function(
        """() => {
            const rater = window.stickerloopRater;
            const queued = rater.state.queue;
            return queued.length >= 1 && queued.every((item) => item.candidates.every(
                (c) => [c.strip_url || c.url, c.source_url].every(
                    (url) => !url || rater.media.get(url)?.complete)));
        }""",
        polling=50,
    )
    page.evaluate("() => { window.__latency.since = performance.now(); }")
    for n in range(1, count + 1):
        page.wait_for_timeout(1000 * think_s)
        for key in keys:
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "(n) => window.__latency.samples.length >= n", arg=n, polling=10, timeout=30_000
        )
    # Every answer acknowledged, so the database holds them all when it is checked.
    page.wait_for_function(
        "() => document.getElementById('outbox-count').textContent === '0'", timeout=30_000
    )
    probe = page.evaluate("() => window.__latency")
    tasks = [d for start, d in probe["longTasks"] if start >= probe["since"]]
    return probe["samples"], tasks


def browse(port: int, username: str, single: int, best: int, per_kind: int, think_s: float):
    """Log in and judge ``per_kind`` items of each campaign; (samples by kind, long tasks)."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import ARGS, CHROMIUM

    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(PROBE)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{base}/login/?next=/rate/{single}/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        stickers, sticker_tasks = judge(page, per_kind, ["y"], think_s)
        page.goto(f"{base}/rate/{best}/")
        animations, animation_tasks = judge(page, per_kind, ["y", "n", "y", "1"], think_s)
        context.close()
        browser.close()
    return {"sticker": stickers, "best_of_n": animations}, sticker_tasks + animation_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 judgments, 4 raters (CI)")
    parser.add_argument("--judgments", type=int, default=None, help="half of each kind")
    parser.add_argument("--raters", type=int, default=None, help="HTTP raters loading the site")
    parser.add_argument("--items", type=int, default=None, help="items of the load's campaign")
    parser.add_argument("--think-ms", type=float, default=500.0, help="on each item")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    args = parser.parse_args()
    judgments = args.judgments or (20 if args.quick else 200)
    raters = args.raters if args.raters is not None else (4 if args.quick else 32)
    items = args.items or (20_000 if args.quick else 200_000)
    per_kind = judgments // 2

    refuse_unless_it_fits(
        f"{items:,} items", disk_bytes=DISK_BYTES_FIXED + items * DISK_BYTES_PER_ITEM
    )
    if not Path("/usr/bin/chromium").exists():
        sys.exit("rating_latency needs Debian's chromium (make system-deps)")
    env = setup_django("bench_rating_latency")
    created = time.perf_counter()
    warmup_raters = 2 * args.workers
    campaign_id, tokens = create_campaign(items, raters + warmup_raters)
    # A few items beyond the judgments: the screen keeps 3 leased ahead.
    username, single, best = create_rating_campaigns(per_kind + 5)
    print(
        f"# campaigns created in {time.perf_counter() - created:.1f} s", file=sys.stderr, flush=True
    )

    from django.db import connection

    connection.close()
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="stickerloop-bench-")) / "gunicorn.log"
    server = start_site(env, port, args.workers, log)
    try:
        wait_until_up(port, tokens[0])
        warm_up(port, tokens[-warmup_raters:], campaign_id, 1.0)
        stop = threading.Event()
        outs = [{} for _ in range(raters)]
        threads = [
            threading.Thread(
                target=rater_loop,
                args=(Client(port, token), campaign_id, float("inf"), out),
                kwargs={"stop": stop},
            )
            for token, out in zip(tokens[:raters], outs, strict=True)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            samples, tasks = browse(port, username, single, best, per_kind, args.think_ms / 1000)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        elapsed = time.monotonic() - started
    finally:
        stop_site(server)

    from django.contrib.auth import get_user_model

    from annotation.models import Judgment

    for kind, got in samples.items():
        slow = [(n, round(x["ms"], 1), round(x["shown_ms"], 1)) for n, x in enumerate(got)]
        slow = [x for x in slow if x[1] > 50]
        print(
            f"# {kind}: (judgment, ms to painted, ms to shown) over 50 ms: {slow}", file=sys.stderr
        )
    print(f"# browser and load: {elapsed:.1f} s", file=sys.stderr)
    load_latencies = [x for o in outs for x in o.get("latencies", [])]
    acknowledged = [x for o in outs for x in o.get("acknowledged", [])]
    every = [s for kind in samples.values() for s in kind]
    latencies = [s["ms"] for s in every]
    emit(
        {
            "bench": "rating_latency",
            "judgments": len(every),
            "raters_loading": raters,
            "think_ms": args.think_ms,
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "sticker_p95_ms": round(percentile([s["ms"] for s in samples["sticker"]], 0.95), 1),
            "best_of_n_p95_ms": round(percentile([s["ms"] for s in samples["best_of_n"]], 0.95), 1),
            "shown_p95_ms": round(percentile([s["shown_ms"] for s in every], 0.95), 1),
            "waited_for_items": sum(s["waited"] for s in every),
            "longest_task_ms": round(max(tasks, default=0.0), 1),
            "long_tasks_over_50ms": sum(d > 50 for d in tasks),
            "load_judgments_per_s": round(len(acknowledged) / elapsed, 1),
            "load_next_p99_ms": round(1000 * percentile(load_latencies, 0.99), 1),
            "browser_judgments_stored": Judgment.objects.filter(
                rater=get_user_model().objects.get(username=username)
            ).count(),
            **check_database(campaign_id, acknowledged),
        }
    )


if __name__ == "__main__":
    sys.exit(main())
