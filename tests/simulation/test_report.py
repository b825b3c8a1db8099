"""The simulation's figures: ranks, Spearman's correlation, the per-rater report."""

import pytest

from simulation.rater import RaterResult
from simulation.report import build_report, format_report, platform_quality, ranks, spearman


def test_ranks_share_ties():
    assert ranks([0.3, 0.1, 0.3, 0.9]) == [2.5, 1.0, 2.5, 4.0]


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None


def test_platform_quality_is_the_mean_dawid_skene_reliability():
    row = {
        "reliability": {
            "aligned": {"majority": 0.1, "dawid_skene": 0.9},
            "style": {"dawid_skene": 0.7},
        },
        "consensus_agreement": 0.5,
    }

    assert platform_quality(row) == pytest.approx(0.8)
    assert platform_quality({"reliability": {}, "consensus_agreement": 0.5}) == 0.5


def result(index: int, profile: str, standing: dict, last_at: float | None = 101.0) -> RaterResult:
    return RaterResult(
        index=index, username=f"sim-1-{index}", profile=profile, standing=standing, last_at=last_at
    )


def test_report_ranks_raters_by_platform_quality():
    results = [
        result(0, "reliable", {1: (1, 1), 2: (1, 1), 3: None}, last_at=102.0),
        result(1, "spammer", {1: (0, 1), 2: (1, 1)}),
        result(2, "adversarial", {1: (0, 1), 2: (0, 1)}),
        result(3, "sloppy", {1: (1, 1), 2: (0, 1)}),
        result(4, "reliable", {}, last_at=None),
    ]
    rows = {
        "sim-1-0": {"reliability": {"aligned": {"dawid_skene": 0.95}}, "status": "active"},
        "sim-1-1": {"reliability": {"aligned": {"dawid_skene": 0.5}}, "status": "paused"},
        "sim-1-2": {"reliability": {"aligned": {"dawid_skene": 0.1}}, "status": "active"},
        "sim-1-3": {"reliability": {"aligned": {"dawid_skene": 0.7}}, "status": "active"},
    }

    report = build_report(
        campaign_id=3, seed=1, results=results, started=100.0, ended=105.5, quality_rows=rows
    )

    assert {k: v for k, v in report.items() if k != "per_rater"} == {
        "campaign": 3,
        "seed": 1,
        "raters": 5,
        "seconds": 5.5,
        "active_seconds": 2.0,
        "judgments": 8,
        "skips": 0,
        "undos": 0,
        "judgments_per_s": 4.0,
        "spearman_accuracy_quality": 0.9487,
        "bottom_fifth": 1,
        "bad_raters": 2,
        "bad_in_bottom_fifth": 1,
        "quality_note": "",
    }
    by_name = {r["username"]: r for r in report["per_rater"]}
    assert [by_name[f"sim-1-{i}"]["quality_rank"] for i in range(4)] == [4.0, 2.0, 1.0, 3.0]
    assert [by_name[f"sim-1-{i}"]["accuracy"] for i in range(5)] == [1.0, 0.5, 0.0, 0.5, None]
    assert "quality_rank" not in by_name["sim-1-4"]
    assert by_name["sim-1-1"]["platform_status"] == "paused"


def test_the_report_as_a_table_worst_platform_quality_first():
    results = [
        result(0, "reliable", {1: (1, 1), 2: (1, 1)}, last_at=102.0),
        result(1, "spammer", {1: (0, 1), 2: None}),
    ]
    results[0].undos, results[1].skips = 1, 1
    rows = {
        "sim-1-0": {"reliability": {"aligned": {"dawid_skene": 0.95}}, "status": "active"},
        "sim-1-1": {"reliability": {"aligned": {"dawid_skene": 0.5}}, "status": "paused"},
    }
    report = build_report(
        campaign_id=3, seed=1, results=results, started=100.0, ended=105.5, quality_rows=rows
    )

    assert format_report(report).splitlines() == [
        "Campaign 3, seed 1: 2 raters, 3 judgments in 2.0 s (1.5 judgments/s), 1 skips, 1 undos.",
        "rater           profile (hidden)   judged skips undos acc. vs oracle platform q.  rank"
        "  status",
        "sim-1-1         spammer                 1     1     0          0.000       0.500   1.0"
        "  paused",
        "sim-1-0         reliable                2     0     1          1.000       0.950   2.0"
        "  active",
        "Spearman correlation, accuracy vs platform quality: —; spammers and adversarial raters "
        "in the bottom fifth (1): 1 of 1.",
    ]
