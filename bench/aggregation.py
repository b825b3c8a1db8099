"""Aggregation at scale: a campaign of a million judgments through the project's result pipeline.

A campaign of 200,000 items × 5 raters drawn from 500 simulated raters with known confusion
matrices answers a binary and a Likert question; judgments are written with COPY into a scratch
PostgreSQL database. Then ``campaign_results_compute`` (the service behind the aggregation task)
loads them as arrays, computes Krippendorff's alpha and Fleiss' kappa, majority vote and
Dawid–Skene per question, stores every item's consensus, and refreshes rater quality. Accuracy is
read back from the stored results against the simulated truth.

    python bench/aggregation.py [--quick]

Last line: {"bench": "aggregation", "judgments": N, "seconds": …, "peak_rss_mb": …,
"setup_peak_rss_mb": …, "ds_accuracy": …, "mv_accuracy": …}. ``seconds`` is the pipeline (load,
compute, store); ``insert_seconds`` the simulated data's COPY. ``peak_rss_mb`` is the pipeline's
peak resident set alone; ``setup_peak_rss_mb`` that of the simulation and COPY before it. Targets
for the million: seconds ≤ 60, peak RSS ≤ 2000 MB, ds_accuracy ≥ mv_accuracy; for 10,000,000
judgments (``--items 2000000``): seconds ≤ 150, peak RSS ≤ 6000 MB, the million's accuracy.
"""

import argparse
import json
import sys
import time

import numpy as np
from _common import emit, refuse_unless_it_fits, reset_vm_hwm, setup_django, vm_hwm_mb

RATERS_PER_ITEM = 5
# Per judgment, on the generous side. Memory: this process peaked at 749.5 MB setting up
# 2,000,000 judgments and at 628.3 MB in the pipeline; the pipeline at 10,000,000 took
# 2,156 MB, about 191 bytes per judgment more. Disk: the scratch database took 539 bytes per
# judgment at 2,000,000 (judgments, items, results and their indexes), with up to 2 GB of
# write-ahead log and temporary files beside it.
MEMORY_BYTES_FIXED = 300 * 1024**2
MEMORY_BYTES_PER_JUDGMENT = 300
DISK_BYTES_FIXED = 2 * 10**9
DISK_BYTES_PER_JUDGMENT = 800
LIKERT = np.arange(1, 6)


def simulate(n_items: int, n_raters: int, seed: int):
    """Truth, rater assignment and answers. Raters: 55% careful, 30% sloppy, 15% spammers who
    mostly repeat one answer; on the scale, a mistake is usually one step off."""
    rng = np.random.default_rng(seed)
    truth_ok = rng.random(n_items) < 0.6
    truth_score = rng.choice(LIKERT, size=n_items, p=[0.1, 0.2, 0.3, 0.25, 0.15])
    kind = rng.choice(3, size=n_raters, p=[0.55, 0.30, 0.15])
    accuracy = np.where(
        kind == 0,
        rng.uniform(0.85, 0.97, n_raters),
        np.where(kind == 1, rng.uniform(0.6, 0.75, n_raters), rng.uniform(0.0, 0.2, n_raters)),
    )
    favourite_ok = rng.random(n_raters) < 0.5
    favourite_score = rng.choice(LIKERT, size=n_raters)
    # Every block of n_raters / 5 items is judged by one permutation of the raters, so each item
    # gets five different raters and every rater the same load.
    per_block = n_raters // RATERS_PER_ITEM
    blocks = -(-n_items // per_block)
    order = np.argsort(rng.random((blocks, n_raters)), axis=1)
    raters = order.reshape(-1)[: n_items * RATERS_PER_ITEM]
    items = np.repeat(np.arange(n_items), RATERS_PER_ITEM)
    right = rng.random(len(items)) < accuracy[raters]
    spam = kind[raters] == 2
    ok = np.where(right, truth_ok[items], ~truth_ok[items])
    ok = np.where(spam & ~right, favourite_ok[raters], ok)
    step = rng.choice([-1, 1], size=len(items))
    near = np.clip(truth_score[items] + step, 1, 5)
    far = rng.choice(LIKERT, size=len(items))
    wrong_score = np.where(rng.random(len(items)) < 0.8, near, far)
    wrong_score = np.where(spam, favourite_score[raters], wrong_score)
    score = np.where(right, truth_score[items], wrong_score)
    seconds = rng.lognormal(np.log(3.0), 0.5, len(items))
    return {
        "truth_ok": truth_ok,
        "truth_score": truth_score,
        "items": items,
        "raters": raters,
        "ok": ok,
        "score": score,
        "seconds": seconds,
    }


def insert(campaign, sim, rater_ids) -> None:
    """COPY candidates, items, their links and judgments, as a finished campaign would hold."""
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation.models import Item, ItemCandidate, Judgment
    from annotation.quality import bulk
    from generation.models import Candidate

    n_items = len(sim["truth_ok"])
    now = timezone.now().isoformat()
    with transaction.atomic():
        # A bulk load into the scratch database: skip the per-row foreign-key triggers (the
        # rows are consistent by construction). Needs a superuser, as on the bench machines.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        bulk.insert_columns(
            Candidate._meta.db_table,
            {
                "kind": np.full(n_items, "sticker", dtype=object),
                "origin": np.full(n_items, "imported", dtype=object),
                "seed": np.zeros(n_items, dtype=np.int64),
                "params": np.full(n_items, "{}", dtype=object),
                "raw_prompt": np.char.add("simulated item ", np.arange(n_items).astype(str)).astype(
                    object
                ),
                "enhanced_prompt": np.full(n_items, "", dtype=object),
                "motion_prompt": np.full(n_items, "", dtype=object),
                "file": np.full(n_items, "", dtype=object),
                "frames_prefix": np.full(n_items, "", dtype=object),
                "width": np.ones(n_items, dtype=np.int64),
                "height": np.ones(n_items, dtype=np.int64),
                "frame_count": np.ones(n_items, dtype=np.int64),
                "file_size": np.zeros(n_items, dtype=np.int64),
                "sha256": np.full(n_items, "", dtype=object),
                "device": np.full(n_items, "", dtype=object),
                "weak_labels": np.full(n_items, "{}", dtype=object),
                "import_source": np.full(n_items, "bench", dtype=object),
                "created_at": np.full(n_items, now, dtype=object),
            },
        )
        bulk.insert_columns(
            Item._meta.db_table,
            {
                "campaign_id": campaign.pk,
                "is_gold": np.zeros(n_items, dtype=bool),
                "overlap_target": np.full(n_items, RATERS_PER_ITEM, dtype=np.int64),
                "judgment_count": np.full(n_items, RATERS_PER_ITEM, dtype=np.int64),
                "leased_count": np.zeros(n_items, dtype=np.int64),
                "group_key": np.full(n_items, "", dtype=object),
                "created_at": np.full(n_items, now, dtype=object),
            },
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {Item._meta.db_table} WHERE campaign_id = %s ORDER BY id",
                [campaign.pk],
            )
            item_ids = np.array([r[0] for r in cursor.fetchall()], dtype=np.int64)
            cursor.execute(
                f"SELECT id FROM {Candidate._meta.db_table} WHERE import_source ="
                " 'bench' ORDER BY id"
            )
            candidate_ids = np.array([r[0] for r in cursor.fetchall()], dtype=np.int64)
        bulk.insert_columns(
            ItemCandidate._meta.db_table,
            {
                "item_id": item_ids,
                "candidate_id": candidate_ids,
                "position": np.zeros(n_items, dtype=np.int64),
                "side": np.full(n_items, "", dtype=object),
            },
        )
        answers = np.array(
            [json.dumps({"ok": bool(o), "score": int(s)}) for o in (True, False) for s in LIKERT],
            dtype=object,
        )
        code = np.where(sim["ok"], 0, 5) + sim["score"] - 1
        n = len(sim["items"])
        client = np.char.add(
            "00000000-0000-4000-8000-", np.char.zfill(np.arange(n).astype(str), 12)
        ).astype(object)
        bulk.insert_columns(
            Judgment._meta.db_table,
            {
                "item_id": item_ids[sim["items"]],
                "rater_id": rater_ids[sim["raters"]],
                "campaign_id": np.full(n, campaign.pk, dtype=np.int64),
                "answers": answers[code],
                "seconds_on_item": np.round(sim["seconds"], 3),
                "client_id": client,
                "skipped": np.zeros(n, dtype=bool),
                "skip_reason": np.full(n, "", dtype=object),
                "excluded": np.zeros(n, dtype=bool),
                "created_at": np.full(n, now, dtype=object),
            },
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return item_ids


def stored_accuracy(campaign, key: str, method: str, item_ids, truth_values) -> float:
    """Accuracy of the stored consensus against the simulated truth; a tie of k labels that
    includes the truth counts 1/k."""
    from annotation.quality import bulk
    from annotation.quality.models import ConsensusResult

    frame = bulk.select_arrays(
        f"SELECT item_id, label, tied_labels FROM {ConsensusResult._meta.db_table}"
        " WHERE campaign_id = %s AND question_key = %s AND method = %s",
        [campaign.pk, key, method],
        {"item": np.int64, "label": str, "tied": str},
    )
    truth = dict(zip(item_ids.tolist(), truth_values.tolist(), strict=True))
    total = 0.0
    for item, label, tied in frame.itertuples(index=False):
        want = truth[item]
        if isinstance(label, str) and label:
            total += json.loads(label) == want
        else:
            options = json.loads(tied)
            total += (want in options) / len(options)
    return total / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, for CI")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--raters", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n_items = args.items or (4_000 if args.quick else 200_000)
    judgments = n_items * RATERS_PER_ITEM
    refuse_unless_it_fits(
        f"{judgments:,} judgments",
        disk_bytes=DISK_BYTES_FIXED + judgments * DISK_BYTES_PER_JUDGMENT,
        memory_bytes=MEMORY_BYTES_FIXED + judgments * MEMORY_BYTES_PER_JUDGMENT,
    )

    setup_django("bench_aggregation")
    from django.contrib.auth import get_user_model

    from annotation.quality.services.results import campaign_results_compute
    from annotation.services.campaigns import campaign_create

    campaign = campaign_create(
        name="bench aggregation",
        kind="single",
        overlap=RATERS_PER_ITEM,
        question_schema=[
            {"key": "ok", "type": "binary", "label": "Does it show the prompt?"},
            {"key": "score", "type": "likert", "label": "How good a sticker is it?"},
        ],
    )
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-rater-{i}", password="!") for i in range(args.raters)]
    )
    rater_ids = np.array([u.pk for u in users], dtype=np.int64)
    sim = simulate(n_items, args.raters, args.seed)
    started = time.perf_counter()
    item_ids = insert(campaign, sim, rater_ids)
    insert_seconds = time.perf_counter() - started
    del sim["ok"], sim["score"], sim["seconds"], sim["items"], sim["raters"]

    # The pipeline's own peak, apart from the simulated data and the COPY before it (the reset
    # also restarts what getrusage reports as this process's peak).
    setup_peak = vm_hwm_mb()
    reset_vm_hwm()
    started = time.perf_counter()
    summary = campaign_results_compute(campaign=campaign, methods=["majority", "dawid_skene"])
    seconds = time.perf_counter() - started
    pipeline_peak = vm_hwm_mb()

    accuracy = {
        (key, method): stored_accuracy(campaign, key, method, item_ids, truth)
        for key, truth in (("ok", sim["truth_ok"]), ("score", sim["truth_score"]))
        for method in ("majority", "dawid_skene")
    }
    from annotation.quality.models import AgreementResult

    agreement = {a.question_key: a for a in AgreementResult.objects.filter(campaign=campaign)}
    print(json.dumps({"stages": summary["questions"], "raters_s": summary["raters_s"]}))
    emit(
        {
            "bench": "aggregation",
            "judgments": n_items * RATERS_PER_ITEM,
            "items": n_items,
            "seconds": round(seconds, 2),
            "insert_seconds": round(insert_seconds, 2),
            "peak_rss_mb": pipeline_peak,
            "setup_peak_rss_mb": setup_peak,
            "ds_accuracy": round(
                (accuracy["ok", "dawid_skene"] + accuracy["score", "dawid_skene"]) / 2, 4
            ),
            "mv_accuracy": round(
                (accuracy["ok", "majority"] + accuracy["score", "majority"]) / 2, 4
            ),
            "ds_accuracy_binary": round(accuracy["ok", "dawid_skene"], 4),
            "mv_accuracy_binary": round(accuracy["ok", "majority"], 4),
            "ds_accuracy_likert": round(accuracy["score", "dawid_skene"], 4),
            "mv_accuracy_likert": round(accuracy["score", "majority"], 4),
            "alpha_binary": round(agreement["ok"].alpha, 4),
            "alpha_likert_ordinal": round(agreement["score"].alpha, 4),
            "kappa_binary": round(agreement["ok"].fleiss_kappa, 4),
        }
    )


if __name__ == "__main__":
    sys.exit(main())
