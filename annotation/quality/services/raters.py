"""Rater quality: per-rater figures over their evaluation window, and automatic pauses."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignMembership,
    Judgment,
    MembershipStatus,
)
from annotation.quality import bulk, selectors
from annotation.quality.models import (
    GoldScore,
    PauseCause,
    QualityPolicy,
    RaterQuality,
)
from annotation.quality.services.membership import rater_auto_pause, window_starts

logger = logging.getLogger(__name__)


def _judgment_frame(campaign: Campaign):
    """Every non-skipped judgment of the campaign as arrays: rater, seconds, created (epoch s),
    excluded."""
    table = Judgment._meta.db_table
    created = "extract(epoch from created_at)" if bulk.is_postgres() else "created_at"
    frame = bulk.select_arrays(
        f"SELECT rater_id, seconds_on_item, {created}, excluded FROM {table}"
        " WHERE campaign_id = %s AND NOT skipped",
        [campaign.pk],
        {"rater": np.int64, "seconds": np.float64, "created": object, "excluded": bool},
    )
    if not bulk.is_postgres() and len(frame):
        import pandas as pd

        frame["created"] = pd.to_datetime(frame["created"], utc=True).map(lambda t: t.timestamp())
    frame["created"] = frame["created"].astype(np.float64)
    frame["excluded"] = frame["excluded"].astype(bool)
    return frame


def _group_medians(inverse: np.ndarray, counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The median of ``values`` in each group (``inverse`` numbers the groups from 0, as
    ``np.unique`` does; ``counts`` their sizes, each at least 1).

    The values are put in group order by a stable sort of the group numbers alone, which
    numpy does as a radix sort when they fit 16 bits, and each group's median is then found by
    partition. At 10,000,000 judgments of 500 raters: 0.3 s, against 5.5 s for a lexsort by
    group and value (with its own ``np.unique``)."""
    small = np.uint16 if len(counts) <= np.iinfo(np.uint16).max + 1 else inverse.dtype
    grouped = values[np.argsort(inverse.astype(small), kind="stable")]
    ends = np.cumsum(counts)
    return np.array(
        [
            np.median(grouped[end - n : end])
            for end, n in zip(ends.tolist(), counts.tolist(), strict=True)
        ]
    )


def _rater_figures(campaign: Campaign, policy: QualityPolicy, since: dict[int, datetime]):
    """Per rater: overall figures for the table, and figures inside the evaluation window for
    the automatic checks."""
    frame = _judgment_frame(campaign)
    raters = frame["rater"].to_numpy()
    seconds = frame["seconds"].to_numpy()
    created = frame["created"].to_numpy()
    # A floor of 0 s turns the speed check off (nothing is faster than 0 s).
    floor = policy.speed_floor_seconds
    fast = seconds < floor
    ids, inverse = np.unique(raters, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids))
    fast_counts = np.bincount(inverse, weights=fast, minlength=len(ids))
    medians = _group_medians(inverse, counts, seconds)
    starts = np.array([since[r].timestamp() if r in since else -np.inf for r in ids.tolist()])
    in_window = created >= starts[inverse] if len(ids) else np.zeros(0, bool)
    w_counts = np.bincount(inverse[in_window], minlength=len(ids))
    w_fast = np.bincount(inverse[in_window], weights=fast[in_window], minlength=len(ids))
    figures = {}
    for i, rater in enumerate(ids.tolist()):
        figures[rater] = {
            "n_judgments": int(counts[i]),
            "median_seconds": float(medians[i]),
            "fast_share": float(fast_counts[i] / counts[i]) if counts[i] and floor else None,
            "window_judgments": int(w_counts[i]),
            "window_fast_share": float(w_fast[i] / w_counts[i]) if w_counts[i] and floor else None,
        }
    gold: dict[int, list] = defaultdict(list)
    for rater, score, judged_at in GoldScore.objects.filter(campaign=campaign).values_list(
        "rater_id", "score", "judgment__created_at"
    ):
        gold[rater].append((score, judged_at))
    for rater, scores in gold.items():
        row = figures.setdefault(
            rater,
            {
                "n_judgments": 0,
                "median_seconds": None,
                "fast_share": None,
                "window_judgments": 0,
                "window_fast_share": None,
            },
        )
        row["n_gold"] = len(scores)
        row["gold_accuracy"] = float(np.mean([s for s, _ in scores]))
        start = since.get(rater)
        window = [s for s, t in scores if start is None or t >= start]
        row["window_gold"] = len(window)
        row["window_gold_accuracy"] = float(np.mean(window)) if window else None
    return figures


def rater_quality_refresh(
    *,
    campaign: Campaign,
    agreement: dict[int, tuple[float, int]] | None = None,
    reliability: dict[int, dict] | None = None,
    now: datetime | None = None,
) -> dict[int, dict]:
    """Recompute every rater's quality record in the campaign; return the figures by rater
    (with the evaluation-window figures the automatic checks use).

    ``agreement`` ({rater: (share, n)}: agreement with the other raters) and ``reliability``
    ({rater: {question: {method: r}}}) come from the results just computed; a rater without
    counted judgments now (paused and excluded) keeps the agreement last recorded.
    """
    now = now or timezone.now()
    policy = selectors.policy_for(campaign)
    figures = _rater_figures(campaign, policy, window_starts(campaign))
    agreement = agreement or {}
    reliability = reliability or {}
    existing = {q.rater_id: q for q in RaterQuality.objects.filter(campaign=campaign)}
    rows = []
    for rater, row in figures.items():
        previous = existing.get(rater)
        share, n_consensus = agreement.get(rater, (None, 0))
        if share is None and previous is not None:
            share, n_consensus = previous.consensus_agreement, previous.n_consensus
        row["consensus_agreement"] = share
        row["n_consensus"] = n_consensus
        rows.append(
            RaterQuality(
                campaign=campaign,
                rater_id=rater,
                n_judgments=row["n_judgments"],
                n_gold=row.get("n_gold", 0),
                gold_accuracy=row.get("gold_accuracy"),
                consensus_agreement=share,
                n_consensus=n_consensus,
                median_seconds=row["median_seconds"],
                fast_share=row["fast_share"],
                reliability=reliability.get(rater) or (previous.reliability if previous else {}),
                computed_at=now,
            )
        )
    with transaction.atomic():
        RaterQuality.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["campaign", "rater"],
            update_fields=[
                "n_judgments",
                "n_gold",
                "gold_accuracy",
                "consensus_agreement",
                "n_consensus",
                "median_seconds",
                "fast_share",
                "reliability",
                "computed_at",
            ],
        )
    return figures


def _pause_reason(policy: QualityPolicy, row: dict) -> tuple[str, str] | None:
    """(cause, reason) when the rater's window figures fall below the policy, else None."""
    n_gold = row.get("window_gold", 0)
    accuracy = row.get("window_gold_accuracy")
    if (
        n_gold >= policy.min_gold_judgments
        and accuracy is not None
        and (accuracy < policy.min_gold_accuracy)
    ):
        return PauseCause.GOLD, (
            f"Gold accuracy {accuracy:.0%} on {n_gold} gold item(s) is below the campaign's "
            f"{policy.min_gold_accuracy:.0%}."
        )
    n = row.get("window_judgments", 0)
    fast = row.get("window_fast_share")
    if n >= policy.min_speed_judgments and fast is not None and fast > policy.max_fast_share:
        return PauseCause.SPEED, (
            f"{fast:.0%} of {n} judgments took under {policy.speed_floor_seconds:g} s "
            f"(the campaign allows {policy.max_fast_share:.0%})."
        )
    share = row.get("consensus_agreement")
    if (
        policy.min_consensus_agreement is not None
        and share is not None
        and row.get("n_consensus", 0) >= policy.min_consensus_judgments
        and share < policy.min_consensus_agreement
    ):
        return PauseCause.AGREEMENT, (
            f"Agreement with the other raters {share:.0%} on {row['n_consensus']} judgments is "
            f"below the campaign's {policy.min_consensus_agreement:.0%}."
        )
    return None


def raters_auto_pause(*, campaign: Campaign, figures: dict[int, dict]) -> list[int]:
    """Pause active members whose figures fall below the policy; return their ids. Their
    judgments in the evaluation window stop counting; the reason is on the membership and in
    the event log."""
    policy = selectors.policy_for(campaign)
    if not policy.auto_pause:
        return []
    paused = []
    active = CampaignMembership.objects.filter(
        campaign=campaign, status=MembershipStatus.ACTIVE, rater_id__in=list(figures)
    ).values_list("rater_id", flat=True)
    for rater_id in active:
        verdict = _pause_reason(policy, figures[rater_id])
        if verdict is None:
            continue
        cause, reason = verdict
        try:
            with transaction.atomic():
                event = rater_auto_pause(
                    campaign=campaign,
                    rater_id=rater_id,
                    cause=cause,
                    reason=reason,
                    metrics={
                        k: v
                        for k, v in figures[rater_id].items()
                        if isinstance(v, int | float | type(None))
                    },
                )
                if event is None:
                    continue
        except ValidationError:
            # A member without the rater role cannot be paused through the membership service;
            # one such row must not stop the other raters' checks.
            logger.warning("could not pause user %s in campaign %s", rater_id, campaign.pk)
            continue
        paused.append(rater_id)
    return paused
