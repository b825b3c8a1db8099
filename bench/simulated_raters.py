"""Simulated raters on a binary alignment campaign of rendered stickers: does the platform's
Dawid–Skene consensus beat majority vote, and does its rater quality find the bad raters?

The site runs under gunicorn and a Celery worker serves the ``default`` queue, on a scratch
database. The campaign's stickers are rendered by the sticker world and imported as candidates
(``simulation.services.world_stickers_import``); a share of their prompts names another subject,
colour or expression than the sticker shows, so there is something to reject. Then
``manage.py simulate_raters`` runs the raters over HTTP, with their hidden profiles (the default
mix: reliable, sloppy, biased towards pass, spammers, adversarial, slow, fast), and asks the
platform for its quality results as the quality page does.

The truth is what the oracle sees: an item is aligned when the oracle's subject, colour and
expression are those its prompt names (``simulation.policies``). The platform's stored
consensus of the ``aligned`` question, by majority vote and by Dawid–Skene, is compared with it
(a majority tie counts half).

    python bench/simulated_raters.py [--quick] [--items N] [--raters R] [--overlap K]
        [--seconds S] [--seed S] [--wrong-share W] [--workers W]

Full size: 2,000 items, 40 raters, overlap 3; --quick: 200 items, 20 raters (CI, < 60 s).
One JSON line: {"bench": "simulated_raters", "items", "raters", "overlap", "judgments",
"judgments_per_s", "ds_agreement", "mv_agreement", "ds_minus_mv", "mv_ties",
"ds_agreement_render", "mv_agreement_render", "bad_raters", "bottom_fifth",
"bad_in_bottom_fifth", "spearman_accuracy_quality", "per_rater", ...}.
Targets (full size): ds_minus_mv >= 0.03; every spammer and adversarial rater in the bottom
fifth of the platform's rater quality (bad_in_bottom_fifth == bad_raters).
"""

import argparse
import io
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from _common import emit, free_port, setup_django, start_worker, stop_worker, wait_until
from _common import start_site as common_start_site

QUESTION = "aligned"


def start_site(env: dict, port: int, workers: int, log: Path) -> subprocess.Popen:
    return common_start_site(
        env,
        port,
        log,
        "--workers",
        str(workers),
        # Sync workers close each connection: every request is accepted by whichever worker
        # is free. Kept-alive connections stay with the worker that accepted them, and one
        # rater alone on a worker then judged ten times as much as the rest.
        *("--worker-class", "sync", "--backlog", "256"),
        extra_env={"DATABASE_CONN_MAX_AGE": "600"},
    )


def make_campaign(items: int, overlap: int, wrong_share: float, seed: int):
    """A running alignment campaign (the preset: the binary ``aligned``, optional reason tags and
    note) of rendered stickers; returns it and, per item id,
    (the oracle's truth, the renderer's truth)."""
    from annotation.models import ItemCandidate
    from annotation.services.campaigns import campaign_create, campaign_start
    from annotation.services.items import campaign_items_add
    from generation.world.oracle import Oracle
    from simulation.judge import decode_frames
    from simulation.policies import see
    from simulation.services import world_stickers_import

    stickers = world_stickers_import(source="bench world", count=items, wrong_share=wrong_share)
    campaign = campaign_create(
        name="Simulated raters: alignment", kind="single", preset="alignment", overlap=overlap
    )
    campaign_items_add(
        campaign=campaign, candidate_groups=[[s.candidate] for s in stickers], seed=seed
    )
    campaign_start(campaign=campaign)
    from django.core.files.storage import default_storage

    images = [decode_frames(default_storage.open(s.candidate.file).read())[0] for s in stickers]
    verdicts = Oracle.load().judge_images(images)
    by_candidate = {
        s.candidate.pk: (
            see(candidate={"position": 0, "prompt": s.candidate.raw_prompt}, image=v).holds[
                "alignment"
            ],
            not s.prompt_wrong,
        )
        for s, v in zip(stickers, verdicts, strict=True)
    }
    links = ItemCandidate.objects.filter(item__campaign=campaign).values_list(
        "item_id", "candidate_id"
    )
    return campaign, {item: by_candidate[candidate] for item, candidate in links}


def agreement_with(truth: dict[int, bool], consensus: dict) -> tuple[float, int]:
    """Share of items whose consensus is the truth (a tie counts half; an item without
    consensus counts none), and the number of ties."""
    score, ties = 0.0, 0
    for item, value in truth.items():
        found = consensus.get(item)
        if found is None:
            continue
        if found.is_tie:
            ties += 1
            score += 0.5
        elif found.label == value:
            score += 1
    return score / len(truth), ties


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 items, 20 raters (CI)")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--raters", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=600.0, help="the raters' deadline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wrong-share", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    args = parser.parse_args()
    items = args.items or (200 if args.quick else 2000)
    raters = args.raters or (20 if args.quick else 40)

    started = time.perf_counter()
    env = setup_django("bench_simraters")
    from django.core.management import call_command
    from django.db import connection

    from annotation.quality import aggregation
    from annotation.quality.selectors import item_consensus

    tick = time.perf_counter()
    campaign, truth = make_campaign(items, args.overlap, args.wrong_share, args.seed)
    setup_s = time.perf_counter() - tick
    connection.close()
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="stickerloop-bench-simraters-"))
    site = start_site(env, port, args.workers, logs / "gunicorn.log")
    worker = start_worker("default", env, logs / "worker.log")
    try:

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(up, timeout=60, interval=0.2)
        out = io.StringIO()
        call_command(
            "simulate_raters",
            *("--campaign", str(campaign.pk), "--raters", str(raters)),
            *("--seconds", str(args.seconds), "--seed", str(args.seed)),
            *("--base-url", f"http://127.0.0.1:{port}", "--patience", "5"),
            *("--quality-timeout", "300", "--json"),
            stdout=out,
        )
        report = json.loads(out.getvalue())
    finally:
        stop_worker(worker)
        stop_worker(site)
    oracle_truth = {item: t[0] for item, t in truth.items()}
    render_truth = {item: t[1] for item, t in truth.items()}
    mv = item_consensus(campaign_id=campaign.pk, question_key=QUESTION, method=aggregation.MAJORITY)
    ds = item_consensus(
        campaign_id=campaign.pk, question_key=QUESTION, method=aggregation.DAWID_SKENE
    )
    mv_agreement, mv_ties = agreement_with(oracle_truth, mv)
    ds_agreement, _ = agreement_with(oracle_truth, ds)
    per_rater = [
        {k: r[k] for k in ("username", "profile", "judgments", "accuracy", "platform_quality")}
        | {"rank": r.get("quality_rank"), "status": r["platform_status"]}
        for r in sorted(report["per_rater"], key=lambda r: r.get("quality_rank") or 1e9)
    ]
    emit(
        {
            "bench": "simulated_raters",
            "items": items,
            "raters": raters,
            "overlap": args.overlap,
            "wrong_share": args.wrong_share,
            "oracle_aligned_share": round(sum(oracle_truth.values()) / items, 4),
            "oracle_vs_render_truth": round(
                sum(oracle_truth[i] == render_truth[i] for i in truth) / items, 4
            ),
            "judgments": report["judgments"],
            "skips": report["skips"],
            "undos": report["undos"],
            "rating_seconds": report["active_seconds"],
            "judgments_per_s": report["judgments_per_s"],
            "ds_agreement": round(ds_agreement, 4),
            "mv_agreement": round(mv_agreement, 4),
            "ds_minus_mv": round(ds_agreement - mv_agreement, 4),
            "mv_ties": mv_ties,
            "ds_agreement_render": round(agreement_with(render_truth, ds)[0], 4),
            "mv_agreement_render": round(agreement_with(render_truth, mv)[0], 4),
            "bad_raters": report["bad_raters"],
            "bottom_fifth": report["bottom_fifth"],
            "bad_in_bottom_fifth": report["bad_in_bottom_fifth"],
            "spearman_accuracy_quality": report["spearman_accuracy_quality"],
            "quality_note": report["quality_note"],
            "setup_seconds": round(setup_s, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "per_rater": per_rater,
        }
    )


if __name__ == "__main__":
    main()
