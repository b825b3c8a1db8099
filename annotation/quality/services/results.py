"""Stored results: agreement, consensus and rankings per question and method, adaptive overlap,
and the result pipeline that computes them.

``campaign_results_compute`` is the result pipeline: score gold, compute agreement and consensus
per question and method, rankings for pair campaigns, rater quality, automatic pauses, the
qualification gate and adaptive overlap. Each step commits on its own, so a long computation
holds no lock on the rating path; a question's results are replaced in one transaction, so
readers see the old set or the new one, never half of each.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignStatus,
    Item,
    ItemCandidate,
)
from annotation.quality import aggregation, bulk, selectors
from annotation.quality.models import (
    AggregationRun,
    AgreementResult,
    ConsensusResult,
    Method,
    ModelStrength,
    QuestionResult,
    RankingMethod,
    RankingResult,
)
from annotation.quality.services.gold import gold_judgments_score
from annotation.quality.services.membership import qualification_gate_apply
from annotation.quality.services.raters import rater_quality_refresh, raters_auto_pause
from generation.models import ModelVersion

DEFAULT_METHODS = (
    aggregation.MAJORITY,
    aggregation.DAWID_SKENE,
    aggregation.MEAN,
    aggregation.MEDIAN,
)
AGGREGATED_TYPES = ("binary", "single_choice", "likert")
HISTOGRAM_BINS = 10
PAIR_OUTCOMES = {"left": 1.0, "right": 0.0, "tie": 0.5}


def _gold_truth(
    campaign: Campaign, question: dict, units: selectors.Units | None
) -> dict[int, int]:
    """True label codes of gold units, keyed as the consensus table's item ids are."""
    codes = {selectors._json_text(v): i for i, v in enumerate(selectors.question_labels(question))}
    key = question["key"]
    truth: dict[int, int] = {}
    gold = Item.objects.filter(campaign=campaign, is_gold=True, gold_answers__has_key=key)
    unit_of = None
    if units is not None:
        unit_of = {
            (int(i), int(c)): u
            for u, (i, c) in enumerate(zip(units.item_ids, units.candidate_ids, strict=True))
        }
    for item_id, answers in gold.values_list("id", "gold_answers").iterator(chunk_size=5000):
        value = answers.get(key)
        if unit_of is None:
            code = codes.get(selectors._json_text(value))
            if code is not None:
                truth[item_id] = code
        elif isinstance(value, dict):
            for candidate, v in value.items():
                unit = unit_of.get((item_id, int(candidate)))
                code = codes.get(selectors._json_text(v))
                if unit is not None and code is not None:
                    truth[unit] = code
    return truth


def _json_labels(labels: tuple) -> np.ndarray:
    return np.array([json.dumps(v) for v in labels], dtype=object)


def _store_consensus(
    *,
    campaign: Campaign,
    question: dict,
    table: aggregation.ConsensusTable,
    units: selectors.Units | None,
    truth: dict[int, int],
    run: AggregationRun | None,
    now: datetime,
    seconds: float,
) -> QuestionResult:
    """Replace the stored rows of this campaign, question and method with ``table``."""
    key, method = question["key"], table.method
    if units is None:
        item_ids = table.item_ids
        candidate_ids = None
    else:
        item_ids = units.item_ids[table.item_ids]
        candidate_ids = units.candidate_ids[table.item_ids]
    labels = _json_labels(table.labels)
    label_text = np.where(table.code >= 0, labels[np.maximum(table.code, 0)], None)
    tied = np.full(len(table), "[]", dtype=object)
    for i in np.flatnonzero(table.code < 0):
        tied[i] = json.dumps([table.labels[c] for c in np.flatnonzero(table.top[i])])
    nan = np.full(len(table), np.nan)
    confidence = np.clip(table.confidence.astype(np.float64), 0.0, 1.0)
    histogram = np.histogram(confidence, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
    reliability = {}
    if table.rater_reliability is not None:
        reliability = {
            str(int(r)): round(float(v), 6)
            for r, v in zip(table.rater_ids, table.rater_reliability, strict=True)
        }
    with transaction.atomic():
        ConsensusResult.objects.filter(campaign=campaign, question_key=key, method=method).delete()
        bulk.insert_columns(
            ConsensusResult._meta.db_table,
            {
                "campaign_id": campaign.pk,
                "item_id": np.asarray(item_ids, dtype=np.int64),
                "candidate_id": candidate_ids,
                "question_key": key,
                "method": method,
                "label": label_text,
                "confidence": confidence,
                "n_judgments": table.n_judgments.astype(np.int64),
                "is_tie": table.code < 0,
                "tied_labels": tied,
                "mean": table.mean if table.mean is not None else nan,
                "median": table.median if table.median is not None else nan,
                "computed_at": now.isoformat(),
            },
        )
        result, _ = QuestionResult.objects.update_or_create(
            campaign=campaign,
            question_key=key,
            method=method,
            defaults={
                "run": run,
                "n_items": len(table),
                "n_judgments": int(table.n_judgments.sum()),
                "n_ties": int((table.code < 0).sum()),
                "mean_confidence": float(confidence.mean()) if len(table) else None,
                "gold_accuracy": table.accuracy(truth),
                "n_gold_items": len(truth),
                "confidence_histogram": histogram.astype(int).tolist(),
                "rater_reliability": reliability,
                "details": {"iterations": table.iterations, "seconds": round(seconds, 3)},
                "computed_at": now,
            },
        )
    return result


def _store_agreement(
    *,
    campaign: Campaign,
    question: dict,
    responses: aggregation.Responses,
    run: AggregationRun | None,
    now: datetime,
) -> AgreementResult:
    labels = selectors.question_labels(question)
    level = selectors.ALPHA_LEVEL_BY_TYPE[question["type"]]
    domain = [float(v) for v in labels] if question["type"] == "likert" else None
    figures = aggregation.agreement(responses, level=level, domain=domain)
    counts = aggregation.answer_distribution(responses)
    option_labels = {o["value"]: o.get("label", str(o["value"])) for o in question["options"]}
    distribution = [
        {"value": value, "label": option_labels.get(value, str(value)), "count": count}
        for value, count in zip(labels, counts, strict=True)
    ]
    result, _ = AgreementResult.objects.update_or_create(
        campaign=campaign,
        question_key=question["key"],
        defaults={
            "run": run,
            "level": level,
            "alpha": figures.alpha,
            "alpha_interval": figures.alpha_interval,
            "fleiss_kappa": figures.fleiss_kappa,
            "fleiss_reason": figures.fleiss_reason,
            "observed_agreement": figures.observed_agreement,
            "n_items": figures.n_items,
            "n_judgments": figures.n_judgments,
            "n_raters": figures.n_raters,
            "distribution": distribution,
            "computed_at": now,
        },
    )
    return result


# Rankings ----------------------------------------------------------------------------------------


def pair_comparisons(
    *, campaign: Campaign, responses: aggregation.Responses
) -> tuple[aggregation.Comparisons, list[ModelVersion]] | None:
    """Comparisons between the model versions shown left and right; answers other than left,
    right and tie, and items whose sides share a model version, are left out."""
    sides: dict[int, list] = defaultdict(lambda: [None, None])
    for item_id, position, model_id in (
        ItemCandidate.objects.filter(item__campaign=campaign, position__lt=2)
        .values_list("item_id", "position", "candidate__model_version_id")
        .iterator(chunk_size=10000)
    ):
        sides[item_id][position] = model_id
    outcome_of = np.array([PAIR_OUTCOMES.get(v, np.nan) for v in responses.labels])
    left, right, outcome = [], [], []
    for item_id, code in zip(responses.item_ids.tolist(), responses.codes.tolist(), strict=True):
        a, b = sides.get(item_id, (None, None))
        value = outcome_of[code]
        if a is None or b is None or a == b or np.isnan(value):
            continue
        left.append(a)
        right.append(b)
        outcome.append(value)
    if not left:
        return None
    model_ids = sorted(set(left) | set(right))
    models = ModelVersion.objects.in_bulk(model_ids)
    index = {mid: i for i, mid in enumerate(model_ids)}
    comparisons = aggregation.Comparisons(
        left=np.array([index[m] for m in left]),
        right=np.array([index[m] for m in right]),
        outcome=np.array(outcome, dtype=np.float64),
        names=tuple(models[m].name for m in model_ids),
    )
    return comparisons, [models[m] for m in model_ids]


def _store_ranking(
    *,
    campaign: Campaign,
    question: dict,
    comparisons: aggregation.Comparisons,
    models: list[ModelVersion],
    run: AggregationRun | None,
    now: datetime,
    n_bootstrap: int,
) -> RankingResult:
    ranking = aggregation.bradley_terry(comparisons, n_bootstrap=n_bootstrap, seed=campaign.pk)
    n = len(models)
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            a_wins, b_wins = int(ranking.wins[i, j]), int(ranking.wins[j, i])
            ties = int(ranking.ties[i, j])
            total = a_wins + b_wins + ties
            if total:
                pairs.append(
                    {
                        "a": models[i].name,
                        "a_id": models[i].pk,
                        "b": models[j].name,
                        "b_id": models[j].pk,
                        "a_wins": a_wins,
                        "b_wins": b_wins,
                        "ties": ties,
                        "a_win_rate": round((a_wins + ties / 2) / total, 6),
                    }
                )
    order = np.argsort(-ranking.strength, kind="stable")
    with transaction.atomic():
        result, _ = RankingResult.objects.update_or_create(
            campaign=campaign,
            question_key=question["key"],
            method=RankingMethod.BRADLEY_TERRY,
            defaults={
                "run": run,
                "n_comparisons": ranking.n_comparisons,
                "n_bootstrap": ranking.n_bootstrap,
                "regularization": ranking.regularization,
                "left_win_share": ranking.left_win_share,
                "left_win_share_decisive": ranking.left_win_share_decisive,
                "tie_share": ranking.tie_share,
                "pairs": pairs,
                "computed_at": now,
            },
        )
        result.strengths.all().delete()
        ModelStrength.objects.bulk_create(
            [
                ModelStrength(
                    ranking=result,
                    model_version=models[i],
                    rank=rank,
                    strength=float(ranking.strength[i]),
                    ci_low=float(ranking.ci_low[i]),
                    ci_high=float(ranking.ci_high[i]),
                    score=float(ranking.score[i]),
                    score_ci_low=float(ranking.score_ci_low[i]),
                    score_ci_high=float(ranking.score_ci_high[i]),
                    wins=int(ranking.wins[i].sum()),
                    losses=int(ranking.wins[:, i].sum()),
                    ties=int(ranking.ties[i].sum()),
                )
                for rank, i in enumerate(order.tolist(), start=1)
            ]
        )
    return result


# Adaptive overlap --------------------------------------------------------------------------------


def overlap_adapt(*, campaign: Campaign, low_confidence_items: Sequence[int]) -> int:
    """Give one more judgment to items whose consensus stays under the target after their
    overlap is reached, up to the campaign's max overlap; return how many were raised."""
    if campaign.status == CampaignStatus.CLOSED or not len(low_confidence_items):
        return 0
    ids = sorted({int(i) for i in low_confidence_items})
    raised = 0
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 5000):
            part = ids[start : start + 5000]
            cursor.execute(
                f"UPDATE {Item._meta.db_table} SET overlap_target = overlap_target + 1"
                " WHERE campaign_id = %s AND NOT is_gold AND judgment_count >= overlap_target"
                f" AND overlap_target < %s AND id IN ({', '.join(['%s'] * len(part))})",
                [campaign.pk, campaign.max_overlap, *part],
            )
            raised += cursor.rowcount
    return raised


# The result pipeline -----------------------------------------------------------------------------


def check_methods(
    *, campaign: Campaign, methods: Sequence[str] | None, question_key: str | None = None
) -> list[str]:
    """The methods to compute; ValidationError for an unknown method, one that fits no question
    of the campaign, or (with ``question_key``) one that does not fit that question."""
    if methods is None:
        # The defaults that fit at least one question: a binary campaign has no mean.
        fitting = {
            m
            for q in selectors.campaign_questions(campaign)
            for m in selectors.methods_for_question(q)
        }
        return [m for m in DEFAULT_METHODS if m in fitting]
    if isinstance(methods, str) or not isinstance(methods, list | tuple):
        raise ValidationError({"methods": ["Must be a list of method names."]})
    unknown = [m for m in methods if m not in Method.values]
    if unknown:
        raise ValidationError(
            {
                "methods": [
                    f"Unknown consensus method {unknown[0]!r}; use one of "
                    f"{', '.join(Method.values)}."
                ]
            }
        )
    if question_key is not None:
        question = selectors.question_of(campaign, question_key)
        for method in methods:
            try:
                selectors.check_method(question, method)
            except ValidationError as exc:
                raise ValidationError({"methods": exc.message_dict["method"]}) from exc
        return list(dict.fromkeys(methods))
    questions = selectors.campaign_questions(campaign)
    for method in methods:
        if not any(method in selectors.methods_for_question(q) for q in questions):
            types = ", ".join(sorted({q["type"] for q in questions}))
            raise ValidationError(
                {
                    "methods": [
                        f"Method {method!r} fits none of the campaign's questions (types: {types})."
                    ]
                }
            )
    return list(dict.fromkeys(methods))


def campaign_results_compute(
    *,
    campaign: Campaign,
    methods: Sequence[str] | None = None,
    question_keys: Sequence[str] | None = None,
    run: AggregationRun | None = None,
    n_bootstrap: int = 200,
    now: datetime | None = None,
) -> dict:
    """Compute and store the campaign's results; return a summary with timings.

    Majority vote is always computed (adaptive overlap reads it); other methods where they fit
    the question's type. Each rater's agreement with the other raters is pooled over the
    questions (``aggregation.rater_agreement``).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    methods = check_methods(campaign=campaign, methods=list(methods) if methods else None)
    policy = selectors.policy_for(campaign)
    summary: dict = {"questions": {}, "rankings": {}}
    summary["gold_scored"] = gold_judgments_score(campaign=campaign, now=now)
    agreed: dict[int, list] = defaultdict(lambda: [0.0, 0])
    reliability: dict[int, dict] = defaultdict(dict)
    low_confidence: set[int] = set()
    for question in selectors.campaign_questions(campaign):
        key = question["key"]
        if question["type"] not in AGGREGATED_TYPES or (question_keys and key not in question_keys):
            continue
        tick = time.perf_counter()
        responses, units = selectors.question_responses(campaign=campaign, question=question)
        info: dict = {"judgments": len(responses), "load_s": round(time.perf_counter() - tick, 3)}
        summary["questions"][key] = info
        if not len(responses):
            continue
        tick = time.perf_counter()
        _store_agreement(
            campaign=campaign, question=question, responses=responses, run=run, now=now
        )
        # Pooled over questions by judgment, as "pairs agreeing" pools a question's items.
        for rater, (share, n) in aggregation.rater_agreement(responses).items():
            agreed[rater][0] += share * n
            agreed[rater][1] += n
        info["agreement_s"] = round(time.perf_counter() - tick, 3)
        truth = _gold_truth(campaign, question, units)
        fitting = selectors.methods_for_question(question)
        wanted = [aggregation.MAJORITY] + [
            m for m in methods if m in fitting and m != aggregation.MAJORITY
        ]
        for method in wanted:
            tick = time.perf_counter()
            table = aggregation.consensus(responses, method=method)
            compute_s = time.perf_counter() - tick
            result = _store_consensus(
                campaign=campaign,
                question=question,
                table=table,
                units=units,
                truth=truth,
                run=run,
                now=now,
                seconds=compute_s,
            )
            info[method] = {
                "compute_s": round(compute_s, 3),
                "total_s": round(time.perf_counter() - tick, 3),
                "gold_accuracy": result.gold_accuracy,
            }
            if table.rater_reliability is not None:
                for rater, value in zip(
                    table.rater_ids.tolist(), table.rater_reliability.tolist(), strict=True
                ):
                    reliability[rater].setdefault(key, {})[method] = round(float(value), 6)
            if method == policy.consensus_method:
                under = table.confidence < policy.confidence_target
                ids = table.item_ids[under]
                low_confidence.update((units.item_ids[ids] if units is not None else ids).tolist())
        if selectors.is_pair_question(campaign, question):
            tick = time.perf_counter()
            pairs = pair_comparisons(campaign=campaign, responses=responses)
            if pairs is not None:
                _store_ranking(
                    campaign=campaign,
                    question=question,
                    comparisons=pairs[0],
                    models=pairs[1],
                    run=run,
                    now=now,
                    n_bootstrap=n_bootstrap,
                )
                summary["rankings"][key] = {
                    "comparisons": len(pairs[0]),
                    "seconds": round(time.perf_counter() - tick, 3),
                }
    tick = time.perf_counter()
    figures = rater_quality_refresh(
        campaign=campaign,
        agreement={r: (s / n, n) for r, (s, n) in agreed.items() if n},
        reliability=dict(reliability),
        now=now,
    )
    summary["paused"] = raters_auto_pause(campaign=campaign, figures=figures)
    summary["qualification"] = qualification_gate_apply(campaign=campaign)
    summary["overlap_raised"] = overlap_adapt(
        campaign=campaign, low_confidence_items=sorted(low_confidence)
    )
    summary["raters_s"] = round(time.perf_counter() - tick, 3)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
