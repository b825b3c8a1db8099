"""The simulation's figures: throughput, each rater's accuracy against the oracle beside the
quality the platform computed for them, and how well the platform's ranking finds the bad ones.
"""

from __future__ import annotations

import math

from .profiles import BAD
from .rater import RaterResult


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, lowest first; equal values share their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            out[i] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on mean ranks); None under 3 pairs or when one
    side does not vary."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} values against {len(ys)}.")
    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if not sxx or not syy:
        return None
    return sxy / math.sqrt(sxx * syy)


def platform_quality(row: dict) -> float | None:
    """One number per rater from the platform's rater table: the mean Dawid–Skene reliability
    over the questions it was computed for (what the quality page shows per question), else the
    rater's agreement with the other raters."""
    values = [
        methods["dawid_skene"]
        for methods in (row.get("reliability") or {}).values()
        if methods.get("dawid_skene") is not None
    ]
    if values:
        return sum(values) / len(values)
    return row.get("consensus_agreement")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    *,
    campaign_id: int,
    seed: int,
    results: list[RaterResult],
    started: float,
    ended: float,
    quality_rows: dict[str, dict],
    quality_note: str = "",
) -> dict:
    """``started`` and ``ended``: ``time.monotonic()`` when the raters started and when the
    last one stopped; judgments/s count up to the last answer, not the raters' wait for items
    that never came. ``quality_rows``: the platform's rater table rows by username (empty when
    no quality was computed; ``quality_note`` says why)."""
    raters = []
    for result in results:
        row = quality_rows.get(result.username) or {}
        raters.append(
            {
                "username": result.username,
                "profile": result.profile,
                "judgments": result.judgments,
                "skips": result.skips,
                "undos": result.undos,
                "refusals": len(result.refusals),
                "stopped": result.stopped,
                "accuracy": _round(result.accuracy),
                "platform_quality": _round(platform_quality(row)) if row else None,
                "consensus_agreement": _round(row.get("consensus_agreement")),
                "gold_accuracy": _round(row.get("gold_accuracy")),
                "platform_status": row.get("status", ""),
                "paused_reason": row.get("paused_reason", ""),
            }
        )
    ranked = [r for r in raters if r["platform_quality"] is not None]
    for r, rank in zip(ranked, ranks([r["platform_quality"] for r in ranked]), strict=True):
        r["quality_rank"] = rank
    both = [r for r in ranked if r["accuracy"] is not None]
    fifth = max(1, len(ranked) // 5)
    bad = [r for r in raters if r["profile"] in BAD]
    judgments = sum(r["judgments"] for r in raters)
    active = max((r.last_at for r in results if r.last_at is not None), default=started) - started
    return {
        "campaign": campaign_id,
        "seed": seed,
        "raters": len(raters),
        "seconds": round(ended - started, 2),
        "active_seconds": round(active, 2),
        "judgments": judgments,
        "skips": sum(r["skips"] for r in raters),
        "undos": sum(r["undos"] for r in raters),
        "judgments_per_s": round(judgments / active, 2) if active > 0 else None,
        "spearman_accuracy_quality": _round(
            spearman([r["accuracy"] for r in both], [r["platform_quality"] for r in both])
        ),
        "bottom_fifth": fifth,
        "bad_raters": len(bad),
        "bad_in_bottom_fifth": sum(
            1 for r in bad if r.get("quality_rank") is not None and r["quality_rank"] <= fifth
        ),
        "quality_note": quality_note,
        "per_rater": raters,
    }


def format_report(report: dict) -> str:
    """The report as a table for people."""

    def cell(value, digits=3) -> str:
        if value is None:
            return "—"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        f"Campaign {report['campaign']}, seed {report['seed']}: {report['raters']} raters, "
        f"{report['judgments']} judgments in {report['active_seconds']} s "
        f"({cell(report['judgments_per_s'], 1)} judgments/s), {report['skips']} skips, "
        f"{report['undos']} undos.",
        f"{'rater':<16}{'profile (hidden)':<18}{'judged':>7}{'skips':>6}{'undos':>6}"
        f"{'acc. vs oracle':>15}{'platform q.':>12}{'rank':>6}  status",
    ]
    for r in sorted(report["per_rater"], key=lambda r: r.get("quality_rank") or math.inf):
        lines.append(
            f"{r['username']:<16}{r['profile']:<18}{r['judgments']:>7}{r['skips']:>6}"
            f"{r['undos']:>6}{cell(r['accuracy']):>15}{cell(r['platform_quality']):>12}"
            f"{cell(r.get('quality_rank'), 1):>6}  {r['platform_status'] or '—'}"
        )
    lines.append(
        f"Spearman correlation, accuracy vs platform quality: "
        f"{cell(report['spearman_accuracy_quality'])}; spammers and adversarial raters in the "
        f"bottom fifth ({report['bottom_fifth']}): {report['bad_in_bottom_fifth']} of "
        f"{report['bad_raters']}."
    )
    if report["quality_note"]:
        lines.append(report["quality_note"])
    return "\n".join(lines)
