"""An experiment's scores from raters and from the platform's own measurements.

- Pass rates (alignment, style; motion, consistency): the rating campaign's consensus per item
  under the campaign's consensus method (majority vote by default), the judgments read and
  aggregated by the quality app's selectors and algorithms; an arm's rate is its passing items
  over its items with a consensus (ties left out), with the Wilson 95% interval.
- Win rates against the base arm (alignment, style, motion, overall): the pair campaign's
  judgments of each arm against the base, fitted with the quality app's Bradley–Terry (ties
  half a win each, percentile bootstrap over judgments); with two sides, the fitted probability
  that the arm beats the base.
- Scene diversity (stickers): the mean pairwise distance of one prompt's samples on the fixed
  pixel embedding (``metrics``), averaged over prompts, with a bootstrap interval over prompts.
- Latency: the mean ``inference_ms`` of the arm's candidates (the batched pipeline call's wall
  time divided by its batch size), with a bootstrap interval over candidates.

Every figure is computed from the candidates every arm shares (``experiment_candidates``), and
all of them are replaced at once: readers see the old set or the new one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from annotation.models import Campaign, ItemCandidate
from annotation.quality import aggregation
from annotation.quality import selectors as quality_selectors
from annotation.quality.services.results import PAIR_OUTCOMES
from generation.models import Candidate, ModelKind
from stickerloop.errors import ServiceConflict
from training_bridge.experiments import metrics
from training_bridge.experiments.models import (
    AXES_BY_KIND,
    Axis,
    Experiment,
    ExperimentArm,
    ExperimentScore,
    ExperimentStatus,
    ScoreSource,
)
from training_bridge.experiments.questions import PASS_RATE_QUESTIONS, WIN_RATE_QUESTIONS
from training_bridge.experiments.selectors import experiment_arms, experiment_candidates

BRADLEY_TERRY_BOOTSTRAP = 200


def _score(arm: ExperimentArm, axis: str, source: str, value: float, low: float, high: float, **kw):
    """A score whose interval holds its value: a percentile bootstrap interval can, rarely,
    miss the point estimate; it is widened to reach it."""
    return ExperimentScore(
        arm=arm,
        axis=axis,
        source=source,
        value=float(value),
        low=min(float(low), float(value)),
        high=max(float(high), float(value)),
        **kw,
    )


def _item_arms(
    campaign: Campaign, batch_arm: dict[int, ExperimentArm]
) -> dict[int, list[ExperimentArm | None]]:
    """item id -> the arms of its shown candidates, in display position order (None for a
    candidate of no arm)."""
    shown: dict[int, list[ExperimentArm | None]] = defaultdict(list)
    for item_id, batch_id in (
        ItemCandidate.objects.filter(item__campaign=campaign)
        .order_by("item_id", "position")
        .values_list("item_id", "candidate__batch_id")
    ):
        shown[item_id].append(batch_arm.get(batch_id))
    return shown


def _pass_rates(
    experiment: Experiment, arms: list[ExperimentArm], now: datetime
) -> list[ExperimentScore]:
    campaign = experiment.rating_campaign
    if campaign is None:
        return []
    shown = _item_arms(campaign, {arm.batch_id: arm for arm in arms})
    method = quality_selectors.policy_for(campaign).consensus_method
    scores = []
    for axis in AXES_BY_KIND[experiment.kind]:
        key = PASS_RATE_QUESTIONS.get(axis)
        question = next(
            (q for q in quality_selectors.campaign_questions(campaign) if q["key"] == key), None
        )
        if question is None:
            continue
        responses, _ = quality_selectors.question_responses(campaign=campaign, question=question)
        if not len(responses):
            continue
        fitting = quality_selectors.methods_for_question(question)
        used = method if method in fitting else aggregation.MAJORITY
        table = aggregation.consensus(responses, method=used)
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # passed, decided, tied
        for index, item_id in enumerate(table.item_ids.tolist()):
            arm = (shown.get(item_id) or [None])[0]
            if arm is None:
                continue
            label = table.label_of(index)
            if label is None:
                counts[arm.pk][2] += 1
                continue
            counts[arm.pk][0] += label is True
            counts[arm.pk][1] += 1
        judgments = Counter(
            arm.pk
            for arm in ((shown.get(i) or [None])[0] for i in responses.item_ids.tolist())
            if arm is not None
        )
        for arm in arms:
            passed, decided, tied = counts.get(arm.pk, (0, 0, 0))
            if not decided:
                continue
            low, high = metrics.wilson_interval(passed, decided)
            scores.append(
                _score(
                    arm,
                    axis,
                    ScoreSource.HUMAN,
                    passed / decided,
                    low,
                    high,
                    n=decided,
                    method="wilson",
                    campaign=campaign,
                    batch_id=arm.batch_id,
                    details={
                        "question": key,
                        "consensus": used,
                        "passed": passed,
                        "items": decided,
                        "ties": tied,
                        "judgments": judgments[arm.pk],
                    },
                    recorded_at=now,
                )
            )
    return scores


def _win_rates(
    experiment: Experiment, arms: list[ExperimentArm], now: datetime
) -> list[ExperimentScore]:
    campaign = experiment.pair_campaign
    if campaign is None:
        return []
    shown = _item_arms(campaign, {arm.batch_id: arm for arm in arms})
    base = next(arm for arm in arms if arm.is_base)
    scores = []
    for axis in AXES_BY_KIND[experiment.kind]:
        key = WIN_RATE_QUESTIONS.get(axis)
        question = next(
            (q for q in quality_selectors.campaign_questions(campaign) if q["key"] == key), None
        )
        if question is None:
            continue
        responses, _ = quality_selectors.question_responses(campaign=campaign, question=question)
        outcome_of = [PAIR_OUTCOMES.get(label) for label in responses.labels]
        # Sorted by item, then rater: the bootstrap draws from a fixed order.
        rows = sorted(
            zip(
                responses.item_ids.tolist(),
                responses.rater_ids.tolist(),
                responses.codes.tolist(),
                strict=True,
            )
        )
        for arm in arms:
            if arm.pk == base.pk:
                continue
            left, outcome = [], []
            for item_id, _, code in rows:
                sides = shown.get(item_id, [])
                if outcome_of[code] is None or len(sides) != 2 or set(sides) != {arm, base}:
                    continue
                left.append(0 if sides[0] == arm else 1)
                outcome.append(outcome_of[code])
            if not left:
                continue
            left_side = np.array(left)
            comparisons = aggregation.Comparisons(
                left=left_side,
                right=1 - left_side,
                outcome=np.array(outcome, dtype=np.float64),
                names=(arm.label, base.label),
            )
            ranking = aggregation.bradley_terry(
                comparisons, n_bootstrap=BRADLEY_TERRY_BOOTSTRAP, seed=experiment.pk
            )
            scores.append(
                _score(
                    arm,
                    axis,
                    ScoreSource.HUMAN,
                    ranking.score[0],
                    ranking.score_ci_low[0],
                    ranking.score_ci_high[0],
                    n=len(left),
                    method="bradley_terry",
                    campaign=campaign,
                    batch_id=arm.batch_id,
                    details={
                        "question": key,
                        "against": base.label,
                        "wins": int(ranking.wins[0, 1]),
                        "losses": int(ranking.wins[1, 0]),
                        "ties": int(ranking.ties[0, 1]),
                        "n_bootstrap": ranking.n_bootstrap,
                        "regularization": ranking.regularization,
                    },
                    recorded_at=now,
                )
            )
    return scores


def _embedding(candidate: Candidate) -> np.ndarray | None:
    try:
        with default_storage.open(candidate.file, "rb") as handle:
            image = Image.open(handle)
            image.load()
    except (OSError, ValueError, UnidentifiedImageError):
        return None
    return metrics.pixel_embedding(image)


def _measurements(
    experiment: Experiment,
    arms: list[ExperimentArm],
    by_arm: dict[int, dict[tuple[int, int], Candidate]],
    now: datetime,
) -> list[ExperimentScore]:
    scores = []
    for arm in arms:
        found = by_arm[arm.pk]
        if experiment.kind == ModelKind.IMAGE:
            by_prompt: dict[int, list[np.ndarray]] = defaultdict(list)
            unreadable = 0
            for (position, _), candidate in found.items():
                vector = _embedding(candidate)
                if vector is None:
                    unreadable += 1
                else:
                    by_prompt[position].append(vector)
            per_prompt = [
                metrics.mean_pairwise_distance(vectors)
                for _, vectors in sorted(by_prompt.items())
                if len(vectors) >= 2
            ]
            if per_prompt:
                low, high = metrics.bootstrap_mean_interval(per_prompt, seed=experiment.pk)
                scores.append(
                    _score(
                        arm,
                        Axis.DIVERSITY,
                        ScoreSource.PLATFORM,
                        float(np.mean(per_prompt)),
                        low,
                        high,
                        n=len(per_prompt),
                        method="bootstrap",
                        batch_id=arm.batch_id,
                        details={
                            "embedding": f"rgba-premultiplied-{metrics.EMBEDDING_SIDE}px",
                            "distance": "rms",
                            "prompts": len(per_prompt),
                            "unreadable": unreadable,
                        },
                        recorded_at=now,
                    )
                )
        timed = [c for c in found.values() if c.inference_ms is not None]
        if timed:
            values = [c.inference_ms for c in timed]
            low, high = metrics.bootstrap_mean_interval(values, seed=experiment.pk)
            scores.append(
                _score(
                    arm,
                    Axis.LATENCY_MS,
                    ScoreSource.PLATFORM,
                    float(np.mean(values)),
                    low,
                    high,
                    n=len(values),
                    method="bootstrap",
                    batch_id=arm.batch_id,
                    details={
                        "devices": sorted({c.device for c in timed}),
                        "frames": sorted({c.frame_count for c in timed}),
                        "steps": sorted(
                            {c.params.get("num_inference_steps") for c in timed} - {None}
                        ),
                    },
                    recorded_at=now,
                )
            )
    return scores


@transaction.atomic
def experiment_results_compute(
    *, experiment: Experiment, now: datetime | None = None
) -> list[ExperimentScore]:
    """Compute the experiment's scores from its campaigns and candidates and replace the ones
    the platform stored before (sources ``human`` and ``platform``; instruments' scores stay).

    Raises ServiceConflict while the arms are still generating, and for a failed experiment.
    """
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.RATING:
        raise ServiceConflict(
            f"Experiment {experiment.pk} is {experiment.get_status_display().lower()}: its "
            "results come once every arm has generated and its campaigns are open."
        )
    now = now or timezone.now()
    arms = experiment_arms(experiment)
    by_arm, _ = experiment_candidates(arms=arms)
    scores = [
        *_measurements(experiment, arms, by_arm, now),
        *_pass_rates(experiment, arms, now),
        *_win_rates(experiment, arms, now),
    ]
    ExperimentScore.objects.filter(
        arm__experiment=experiment, source__in=ScoreSource.values
    ).delete()
    ExperimentScore.objects.bulk_create(scores)
    experiment.results_computed_at = now
    experiment.save(update_fields=["results_computed_at", "updated_at"])
    return scores
