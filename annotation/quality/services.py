"""Quality writes: policies, gold items and scores, rater quality and pauses, stored results.

This app writes to the annotation app's tables only where quality control owns the meaning:
``Item.is_gold`` / ``gold_answers`` / ``overlap_target``, ``Judgment.excluded`` (with the item's
``judgment_count``, which counts the judgments that count) and membership state, the last
through ``annotation.services.campaign_membership_set`` so leases are released the same way.

``campaign_results_compute`` is the result pipeline: score gold, compute agreement and consensus
per question and method, rankings for pair campaigns, rater quality, automatic pauses, the
qualification gate and adaptive overlap. Each step commits on its own, so a long computation
holds no lock on the rating path; a question's results are replaced in one transaction, so
readers see the old set or the new one, never half of each.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignMembership,
    CampaignStatus,
    Item,
    ItemCandidate,
    Judgment,
    MembershipStatus,
)
from annotation.quality import aggregation, bulk, selectors
from annotation.quality.models import (
    AggregationRun,
    AgreementResult,
    ConsensusResult,
    GoldScore,
    MembershipAction,
    MembershipEvent,
    Method,
    ModelStrength,
    PauseCause,
    QualityPolicy,
    QuestionResult,
    RankingMethod,
    RankingResult,
    RaterQuality,
    RunStatus,
    RunTrigger,
)
from generation.models import ModelVersion
from stickerloop.api import ServiceConflict

logger = logging.getLogger(__name__)

DEFAULT_METHODS = (
    aggregation.MAJORITY,
    aggregation.DAWID_SKENE,
    aggregation.MEAN,
    aggregation.MEDIAN,
)
AGGREGATED_TYPES = ("binary", "single_choice", "likert")
HISTOGRAM_BINS = 10
PAIR_OUTCOMES = {"left": 1.0, "right": 0.0, "tie": 0.5}
# Advisory lock keys of this app: "QC" (ASCII) in the high bits, the campaign id below 2**40.
ADVISORY_NAMESPACE = 0x5143 << 40


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Policy ------------------------------------------------------------------------------------------

POLICY_SHARES = (
    "min_gold_accuracy",
    "min_consensus_agreement",
    "max_fast_share",
    "confidence_target",
    "qualification_min_accuracy",
)
POLICY_COUNTS = {
    "min_gold_judgments": 1000,
    "min_consensus_judgments": 100_000,
    "min_speed_judgments": 100_000,
    "qualification_min_gold": 1000,
}
POLICY_FIELDS = {
    *POLICY_SHARES,
    *POLICY_COUNTS,
    "speed_floor_seconds",
    "consensus_method",
    "qualification_campaign",
    "auto_pause",
}
SPEED_FLOOR_MAX = 600.0


def _policy_errors(campaign: Campaign, values: dict, merged: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in sorted(set(values) - POLICY_FIELDS):
        errors[name] = ["Unknown policy field."]
    for name in POLICY_SHARES:
        if name not in values:
            continue
        value = values[name]
        if value is None and name == "min_consensus_agreement":
            continue
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            errors[name] = [f"Must be a number from 0 to 1, not {value!r}."]
    for name, high in POLICY_COUNTS.items():
        if name in values:
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                errors[name] = [f"Must be a whole number from 1 to {high}, not {value!r}."]
    if "speed_floor_seconds" in values:
        value = values["speed_floor_seconds"]
        if not _is_number(value) or not 0.0 <= value <= SPEED_FLOOR_MAX:
            errors["speed_floor_seconds"] = [
                f"Must be a number of seconds from 0 to {SPEED_FLOOR_MAX:.0f}, not {value!r}."
            ]
    if "auto_pause" in values and not isinstance(values["auto_pause"], bool):
        errors["auto_pause"] = ["Must be true or false."]
    if "consensus_method" in values:
        method = values["consensus_method"]
        fitting = {
            m
            for q in selectors.campaign_questions(campaign)
            for m in selectors.methods_for_question(q)
        }
        if method not in Method.values:
            errors["consensus_method"] = [
                f"Unknown consensus method {method!r}; use one of {', '.join(Method.values)}."
            ]
        elif method not in fitting:
            errors["consensus_method"] = [
                f"Method {method!r} fits none of the campaign's questions "
                f"(methods that fit: {', '.join(sorted(fitting)) or 'none'})."
            ]
    if "qualification_campaign" in values and values["qualification_campaign"] is not None:
        qualifier = values["qualification_campaign"]
        if not isinstance(qualifier, Campaign):
            errors["qualification_campaign"] = ["Must be a campaign."]
        elif qualifier.pk == campaign.pk:
            errors["qualification_campaign"] = ["A campaign cannot qualify raters for itself."]
        elif "qualification_min_gold" not in errors:
            gold = qualifier.items.filter(is_gold=True).count()
            needed = merged["qualification_min_gold"]
            if gold < needed:
                errors["qualification_campaign"] = [
                    f"Campaign {qualifier.name!r} has {gold} gold item(s); raters must answer "
                    f"{needed} to qualify."
                ]
    return errors


@transaction.atomic
def quality_policy_set(*, campaign: Campaign, **values) -> QualityPolicy:
    """Create or change a campaign's quality policy; ValidationError (nothing stored) names each
    field out of range. Setting a qualification campaign applies the gate at once."""
    policy = QualityPolicy.objects.select_for_update().filter(campaign=campaign).first()
    policy = policy or QualityPolicy(campaign=campaign)
    merged = {name: getattr(policy, name) for name in POLICY_FIELDS - {"qualification_campaign"}}
    merged.update({k: v for k, v in values.items() if k in POLICY_FIELDS})
    errors = _policy_errors(campaign, values, merged)
    if errors:
        raise ValidationError(errors)
    for name, value in values.items():
        floating = name in POLICY_SHARES or name == "speed_floor_seconds"
        setattr(policy, name, float(value) if floating and value is not None else value)
    policy.full_clean()
    policy.save()
    campaign.quality_policy = policy
    qualification_gate_apply(campaign=campaign)
    return policy


# Gold items and scoring --------------------------------------------------------------------------


def _gold_clean(campaign: Campaign, gold_answers, candidate_ids: list[int]) -> dict:
    """Check known answers against the schema; they may cover some questions, not text ones."""
    from annotation.schema import validate_answers

    if not isinstance(gold_answers, dict) or not gold_answers:
        raise ValidationError(
            {"gold_answers": ["Give the known answers as {question key: answer}."]}
        )
    questions = {q["key"]: q for q in selectors.campaign_questions(campaign)}
    errors: dict[str, list[str]] = {}
    for key in gold_answers:
        if key not in questions:
            errors[f"gold_answers.{key}"] = [f"Unknown question {key!r}."]
        elif questions[key]["type"] == "text":
            errors[f"gold_answers.{key}"] = ["A text question has no known answer to score."]
    if errors:
        raise ValidationError(errors)
    subset = [{**questions[key], "required": True} for key in gold_answers]
    try:
        return validate_answers(subset, gold_answers, candidate_ids=candidate_ids)
    except ValidationError as exc:
        raise ValidationError(
            {f"gold_answers.{k.removeprefix('answers.')}": v for k, v in exc.message_dict.items()}
        ) from exc


@transaction.atomic
def item_gold_set(*, item: Item, gold_answers: dict) -> Item:
    """Make an item gold with known answers (or change them); its judgments are scored again."""
    item = Item.objects.select_for_update().select_related("campaign").get(pk=item.pk)
    clean = _gold_clean(item.campaign, gold_answers, item.candidate_ids_in_order())
    if not item.is_gold and item.leased_count:
        raise ServiceConflict(
            f"Item {item.pk} is leased to {item.leased_count} rater(s) now; mark it gold once "
            "they have answered."
        )
    item.is_gold = True
    item.gold_answers = clean
    item.save(update_fields=["is_gold", "gold_answers"])
    GoldScore.objects.filter(judgment__item=item).delete()
    gold_judgments_score(campaign=item.campaign, item_ids=[item.pk])
    return item


@transaction.atomic
def item_gold_unset(*, item: Item) -> Item:
    """Make a gold item ordinary again; its gold scores are dropped."""
    item = Item.objects.select_for_update().get(pk=item.pk)
    if not item.is_gold:
        raise ServiceConflict(f"Item {item.pk} is not a gold item.")
    # An ordinary item may not hold more judgments than its target.
    item.overlap_target = max(item.overlap_target, item.judgment_count, 1)
    item.is_gold = False
    item.gold_answers = None
    item.save(update_fields=["is_gold", "gold_answers", "overlap_target"])
    GoldScore.objects.filter(judgment__item=item).delete()
    return item


def gold_items_add(
    *,
    campaign: Campaign,
    candidate_groups: list,
    gold_answers: list[dict],
    seed: int | None = None,
) -> list[Item]:
    """New gold items showing ``candidate_groups`` (the annotation app builds and checks them)."""
    from annotation import services as annotation_services

    return annotation_services.campaign_items_add(
        campaign=campaign, candidate_groups=candidate_groups, seed=seed, gold_answers=gold_answers
    )


@transaction.atomic
def gold_items_promote(
    *,
    campaign: Campaign,
    question_key: str,
    method: str = aggregation.MAJORITY,
    min_confidence: float = 0.9,
    min_judgments: int = 3,
    limit: int | None = None,
) -> list[int]:
    """Make items gold whose stored consensus is near-certain; return their ids.

    Reads the stored results (run the aggregation first); ties, items already gold and items
    someone holds a lease on are passed over.
    """
    errors: dict[str, list[str]] = {}
    if not _is_number(min_confidence) or not 0.5 <= min_confidence <= 1.0:
        errors["min_confidence"] = [f"Must be a number from 0.5 to 1, not {min_confidence!r}."]
    if isinstance(min_judgments, bool) or not isinstance(min_judgments, int) or min_judgments < 1:
        errors["min_judgments"] = [f"Must be a whole number of at least 1, not {min_judgments!r}."]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        errors["limit"] = [f"Must be a whole number of at least 1, not {limit!r}."]
    question = None
    try:
        question = selectors.question_of(campaign, question_key)
        selectors.check_method(question, method)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if question is not None and question.get("per_candidate") and "question_key" not in errors:
        errors["question_key"] = ["Per-candidate questions cannot be promoted to gold."]
    if (
        not errors
        and not QuestionResult.objects.filter(
            campaign=campaign, question_key=question_key, method=method
        ).exists()
    ):
        errors["method"] = [
            f"No stored {method} results for {question_key!r}; compute the "
            "campaign's results first."
        ]
    if errors:
        raise ValidationError(errors)
    rows = (
        ConsensusResult.objects.filter(
            campaign=campaign,
            question_key=question_key,
            method=method,
            candidate__isnull=True,
            is_tie=False,
            confidence__gte=min_confidence,
            n_judgments__gte=min_judgments,
            item__is_gold=False,
            item__leased_count=0,
        )
        .order_by("-confidence", "item_id")
        .values_list("item_id", "label")
    )
    if limit:
        rows = rows[:limit]
    chosen = dict(rows)
    items = list(Item.objects.select_for_update().filter(pk__in=chosen, is_gold=False))
    for item in items:
        item.is_gold = True
        item.gold_answers = {question_key: chosen[item.pk]}
    Item.objects.bulk_update(items, ["is_gold", "gold_answers"], batch_size=1000)
    ids = [item.pk for item in items]
    gold_judgments_score(campaign=campaign, item_ids=ids)
    return sorted(ids)


def gold_answer_score(schema: list[dict], gold_answers: dict, answers: dict) -> tuple[float, dict]:
    """(share of gold questions answered right, {key: right}). A multi-choice answer is right
    when it is the same set; a per-candidate answer when every candidate's answer is."""
    questions = {q["key"]: q for q in schema}
    details: dict[str, bool] = {}
    for key, gold in gold_answers.items():
        question = questions.get(key)
        if question is None or question["type"] == "text":
            continue
        given = answers.get(key)
        if question.get("per_candidate"):
            right = isinstance(given, dict) and all(
                _same(given.get(str(c)), v) for c, v in gold.items()
            )
        elif question["type"] == "multi_choice":
            right = isinstance(given, list) and set(given) == set(gold)
        else:
            right = _same(given, gold)
        details[key] = bool(right)
    if not details:
        return 0.0, {}
    return sum(details.values()) / len(details), details


def _same(given, gold) -> bool:
    # True == 1 in Python; a binary answer must not match a Likert 1.
    return type(given) is type(gold) and given == gold


def gold_judgments_score(
    *, campaign: Campaign, item_ids: Sequence[int] | None = None, now: datetime | None = None
) -> int:
    """Score the campaign's judgments on gold items that have no score yet; return how many.

    Skips are not scored. Idempotent: the one-to-one on the judgment and ``ignore_conflicts``
    make a concurrent second call store nothing twice.
    """
    now = now or timezone.now()
    judgments = Judgment.objects.filter(
        campaign=campaign, item__is_gold=True, skipped=False, gold_score__isnull=True
    )
    if item_ids is not None:
        judgments = judgments.filter(item_id__in=list(item_ids))
    schema = selectors.campaign_questions(campaign)
    scores = []
    for judgment_id, rater_id, answers, gold in judgments.values_list(
        "id", "rater_id", "answers", "item__gold_answers"
    ).iterator(chunk_size=5000):
        score, details = gold_answer_score(schema, gold or {}, answers or {})
        if not details:
            continue
        scores.append(
            GoldScore(
                judgment_id=judgment_id,
                campaign_id=campaign.pk,
                rater_id=rater_id,
                score=score,
                details=details,
                scored_at=now,
            )
        )
    GoldScore.objects.bulk_create(scores, batch_size=2000, ignore_conflicts=True)
    return len(scores)


def judgment_gold_score(*, judgment_id: int) -> GoldScore | None:
    """Score one judgment if it is on a gold item; for the rating path to call after commit.

    In a qualification campaign, a new score may open (or close) other campaigns' queues to the
    rater at once rather than at the next periodic run.
    """
    judgment = Judgment.objects.select_related("item", "campaign").filter(pk=judgment_id).first()
    if judgment is None or not judgment.item.is_gold or judgment.skipped:
        return None
    gold_judgments_score(campaign=judgment.campaign, item_ids=[judgment.item_id])
    score = GoldScore.objects.filter(judgment_id=judgment_id).first()
    for policy in QualityPolicy.objects.filter(qualification_campaign=judgment.campaign):
        qualification_gate_apply(campaign=policy.campaign, rater_ids=[judgment.rater_id])
    return score


# Pausing and resuming raters ---------------------------------------------------------------------


def _window_starts(campaign: Campaign) -> dict[int, datetime]:
    """Per rater, when their current evaluation window began: their last resume, if any."""
    rows = (
        MembershipEvent.objects.filter(
            membership__campaign=campaign, action=MembershipAction.RESUMED
        )
        .order_by("membership_id", "-created_at")
        .values_list("membership__rater_id", "created_at")
    )
    starts: dict[int, datetime] = {}
    for rater_id, created_at in rows:
        starts.setdefault(rater_id, created_at)
    return starts


def _judgments_exclude(*, campaign_id: int, rater_id: int, since: datetime | None) -> int:
    """Exclude the rater's judgments from ``since`` (all when None) and free their slots, so
    the items get judgments from someone else. Caller holds the membership row locked."""
    judgments = Judgment.objects.filter(campaign_id=campaign_id, rater_id=rater_id, excluded=False)
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    rows = list(judgments.values_list("id", "item_id", "skipped"))
    if not rows:
        return 0
    Judgment.objects.filter(pk__in=[r[0] for r in rows]).update(excluded=True)
    counted = sorted(item_id for _, item_id, skipped in rows if not skipped)
    if counted:
        # One judgment per rater and item, so each item loses exactly one.
        Item.objects.filter(pk__in=counted).update(judgment_count=F("judgment_count") - 1)
    return len(rows)


def _judgments_restore(*, campaign_id: int, rater_id: int, since: datetime | None) -> int:
    """Undo ``_judgments_exclude``. An item that was refilled meanwhile keeps every judgment:
    its target rises to hold them (this may pass the campaign's max overlap)."""
    judgments = Judgment.objects.filter(campaign_id=campaign_id, rater_id=rater_id, excluded=True)
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    rows = list(judgments.values_list("id", "item_id", "skipped"))
    if not rows:
        return 0
    Judgment.objects.filter(pk__in=[r[0] for r in rows]).update(excluded=False)
    counted = sorted(item_id for _, item_id, skipped in rows if not skipped)
    if counted:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Item._meta.db_table} SET judgment_count = judgment_count + 1,"
                " overlap_target = CASE WHEN is_gold THEN overlap_target ELSE"
                " CASE WHEN overlap_target < judgment_count + 1 + leased_count"
                " THEN judgment_count + 1 + leased_count ELSE overlap_target END END"
                f" WHERE id IN ({', '.join(['%s'] * len(counted))})",
                counted,
            )
    return len(rows)


def _membership_locked(campaign: Campaign, rater_id: int) -> CampaignMembership:
    membership = (
        CampaignMembership.objects.select_for_update()
        .select_related("rater")
        .filter(campaign=campaign, rater_id=rater_id)
        .first()
    )
    if membership is None:
        raise ValidationError(
            {"rater": [f"Rater {rater_id} is not a member of campaign {campaign.name!r}."]}
        )
    return membership


def _pause(
    *,
    campaign: Campaign,
    membership: CampaignMembership,
    cause: str,
    reason: str,
    actor: AbstractBaseUser | None,
    exclude: bool,
    metrics: dict | None = None,
) -> MembershipEvent:
    """Pause an active membership. Assumes: in a transaction, membership row locked."""
    from annotation import services as annotation_services

    window_start = _window_starts(campaign).get(membership.rater_id) if exclude else None
    annotation_services.campaign_membership_set(
        campaign=campaign,
        rater=membership.rater,
        status=MembershipStatus.PAUSED,
        reason=reason[:500],
    )
    excluded = (
        _judgments_exclude(
            campaign_id=campaign.pk, rater_id=membership.rater_id, since=window_start
        )
        if exclude
        else 0
    )
    return MembershipEvent.objects.create(
        membership=membership,
        action=MembershipAction.PAUSED,
        cause=cause,
        reason=reason[:500],
        actor=actor,
        excluded_judgments=excluded,
        metrics=metrics or {},
        window_start=window_start if exclude else None,
    )


@transaction.atomic
def rater_pause(
    *,
    campaign: Campaign,
    rater_id: int,
    reason: str,
    actor: AbstractBaseUser | None = None,
    exclude: bool = True,
) -> MembershipEvent:
    """A curator pauses a rater; with ``exclude`` their judgments since their last resume (or
    all) stop counting."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the rater is paused."]})
    if len(reason) > 500:
        raise ValidationError({"reason": ["At most 500 characters."]})
    membership = _membership_locked(campaign, rater_id)
    if membership.status == MembershipStatus.PAUSED:
        raise ServiceConflict(f"Rater {membership.rater.get_username()} is paused already.")
    return _pause(
        campaign=campaign,
        membership=membership,
        cause=PauseCause.MANUAL,
        reason=reason,
        actor=actor,
        exclude=exclude,
    )


@transaction.atomic
def rater_resume(
    *,
    campaign: Campaign,
    rater_id: int,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> MembershipEvent:
    """Resume a paused rater: the judgments their pause excluded count again, and automatic
    checks start a fresh window from now (they need the minimum numbers again)."""
    from annotation import services as annotation_services

    if len(reason or "") > 500:
        raise ValidationError({"reason": ["At most 500 characters."]})
    membership = _membership_locked(campaign, rater_id)
    if membership.status != MembershipStatus.PAUSED:
        raise ServiceConflict(f"Rater {membership.rater.get_username()} is not paused.")
    state = selectors.qualification_state(campaign=campaign, rater_id=rater_id)
    if not state.passed:
        raise ServiceConflict(state.reason)
    pause = (
        MembershipEvent.objects.filter(membership=membership, action=MembershipAction.PAUSED)
        .order_by("-created_at", "-id")
        .first()
    )
    annotation_services.campaign_membership_set(
        campaign=campaign, rater=membership.rater, status=MembershipStatus.ACTIVE
    )
    restored = 0
    if pause is not None and pause.excluded_judgments:
        restored = _judgments_restore(
            campaign_id=campaign.pk, rater_id=rater_id, since=pause.window_start
        )
    return MembershipEvent.objects.create(
        membership=membership,
        action=MembershipAction.RESUMED,
        cause=pause.cause if pause else PauseCause.MANUAL,
        reason=(reason or "").strip() or "Resumed.",
        actor=actor,
        excluded_judgments=restored,
        window_start=timezone.now(),
    )


def qualification_gate_apply(*, campaign: Campaign, rater_ids: Sequence[int] | None = None) -> dict:
    """Pause active members who have not passed the campaign's qualification campaign, and
    resume those paused for that reason who have passed since (or when the requirement went).
    Returns {"paused": [rater ids], "resumed": [rater ids]}."""
    policy = selectors.policy_for(campaign)
    memberships = CampaignMembership.objects.filter(campaign=campaign).select_related("rater")
    if rater_ids is not None:
        memberships = memberships.filter(rater_id__in=list(rater_ids))
    last_cause = {}
    for membership_id, cause in (
        MembershipEvent.objects.filter(
            membership__campaign=campaign, action=MembershipAction.PAUSED
        )
        .order_by("membership_id", "-created_at", "-id")
        .values_list("membership_id", "cause")
    ):
        last_cause.setdefault(membership_id, cause)
    paused, resumed = [], []
    for membership in memberships:
        waiting = (
            membership.status == MembershipStatus.PAUSED
            and last_cause.get(membership.pk) == PauseCause.QUALIFICATION
        )
        if policy.qualification_campaign_id is None:
            if waiting:
                rater_resume(
                    campaign=campaign,
                    rater_id=membership.rater_id,
                    reason="The campaign no longer needs a qualification.",
                )
                resumed.append(membership.rater_id)
            continue
        state = selectors.qualification_state(campaign=campaign, rater_id=membership.rater_id)
        with transaction.atomic():
            locked = _membership_locked(campaign, membership.rater_id)
            if locked.status == MembershipStatus.ACTIVE and not state.passed:
                _pause(
                    campaign=campaign,
                    membership=locked,
                    cause=PauseCause.QUALIFICATION,
                    reason=state.reason,
                    actor=None,
                    exclude=False,
                    metrics={"n_gold": state.n_gold, "accuracy": state.accuracy},
                )
                paused.append(membership.rater_id)
        if waiting and state.passed:
            rater_resume(
                campaign=campaign, rater_id=membership.rater_id, reason="Passed the qualification."
            )
            resumed.append(membership.rater_id)
    return {"paused": paused, "resumed": resumed}


# Rater quality -----------------------------------------------------------------------------------


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


def _per_rater_median(raters: np.ndarray, values: np.ndarray) -> dict[int, float]:
    if not len(raters):
        return {}
    ids, inverse = np.unique(raters, return_inverse=True)
    n = np.bincount(inverse)
    order = np.lexsort((values, inverse))
    ordered = values[order]
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    median = (ordered[starts + (n - 1) // 2] + ordered[starts + n // 2]) / 2
    return dict(zip(ids.tolist(), median.tolist(), strict=True))


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
    medians = _per_rater_median(raters, seconds)
    starts = np.array([since[r].timestamp() if r in since else -np.inf for r in ids.tolist()])
    in_window = created >= starts[inverse] if len(ids) else np.zeros(0, bool)
    w_counts = np.bincount(inverse[in_window], minlength=len(ids))
    w_fast = np.bincount(inverse[in_window], weights=fast[in_window], minlength=len(ids))
    figures = {}
    for i, rater in enumerate(ids.tolist()):
        figures[rater] = {
            "n_judgments": int(counts[i]),
            "median_seconds": medians.get(rater),
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

    ``agreement`` ({rater: (share, n)}) and ``reliability`` ({rater: {question: {method: r}}})
    come from the consensus just computed; a rater without counted judgments now (paused and
    excluded) keeps the agreement last recorded.
    """
    now = now or timezone.now()
    policy = selectors.policy_for(campaign)
    figures = _rater_figures(campaign, policy, _window_starts(campaign))
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
            f"Agreement with consensus {share:.0%} on {row['n_consensus']} judgments is below "
            f"the campaign's {policy.min_consensus_agreement:.0%}."
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
                membership = _membership_locked(campaign, rater_id)
                if membership.status != MembershipStatus.ACTIVE:
                    continue
                _pause(
                    campaign=campaign,
                    membership=membership,
                    cause=cause,
                    reason=reason,
                    actor=None,
                    exclude=True,
                    metrics={
                        k: v
                        for k, v in figures[rater_id].items()
                        if isinstance(v, int | float | type(None))
                    },
                )
        except ValidationError:
            # A member without the rater role cannot be paused through the membership service;
            # one such row must not stop the other raters' checks.
            logger.warning("could not pause user %s in campaign %s", rater_id, campaign.pk)
            continue
        paused.append(rater_id)
    return paused


# Storing results ---------------------------------------------------------------------------------


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


def _is_pair_question(question: dict) -> bool:
    values = set(selectors.question_labels(question))
    return (
        question.get("type") == "single_choice"
        and {"left", "right"} <= values
        and (not question.get("per_candidate"))
    )


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

    Majority vote is always computed (rater agreement and adaptive overlap read it); other
    methods where they fit the question's type.
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
            if method == aggregation.MAJORITY:
                for rater, (share, n) in aggregation.rater_consensus_agreement(
                    responses, table
                ).items():
                    agreed[rater][0] += share * n
                    agreed[rater][1] += n
            if table.rater_reliability is not None:
                for rater, value in zip(
                    table.rater_ids.tolist(), table.rater_reliability.tolist(), strict=True
                ):
                    reliability[rater].setdefault(key, {})[method] = round(float(value), 6)
            if method == policy.consensus_method:
                under = table.confidence < policy.confidence_target
                ids = table.item_ids[under]
                low_confidence.update((units.item_ids[ids] if units is not None else ids).tolist())
        if campaign.kind == CampaignKind.PAIR and _is_pair_question(question):
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


# Runs (the task's state machine) -----------------------------------------------------------------


@transaction.atomic
def aggregation_run_request(
    *,
    campaign: Campaign,
    methods: Sequence[str] | None = None,
    trigger: str = RunTrigger.ON_DEMAND,
    requested_by: AbstractBaseUser | None = None,
) -> AggregationRun:
    """Queue a computation of the campaign's results (on the ``default`` queue, after commit).

    A run already waiting for the campaign is returned instead of a second one.
    """
    from annotation.quality import tasks

    methods = check_methods(campaign=campaign, methods=methods)
    Campaign.objects.select_for_update().get(pk=campaign.pk)
    waiting = AggregationRun.objects.filter(campaign=campaign, status=RunStatus.QUEUED).first()
    if waiting is not None:
        return waiting
    run = AggregationRun.objects.create(
        campaign=campaign, trigger=trigger, methods=methods, requested_by=requested_by
    )
    tasks.aggregate_campaign.delay_on_commit(run.pk)
    return run


@transaction.atomic
def _run_claim(run_id: int) -> AggregationRun | None:
    run = AggregationRun.objects.select_for_update().select_related("campaign").get(pk=run_id)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return None
    # RUNNING here is a redelivery after a worker died; computing again replaces the same rows.
    run.status = RunStatus.RUNNING
    run.started_at = timezone.now()
    run.save(update_fields=["status", "started_at"])
    return run


@contextmanager
def _campaign_lock(campaign_id: int):
    """One computation per campaign at a time (a session advisory lock on PostgreSQL): two runs
    replacing the same result rows at once would trip over each other's inserts."""
    if not bulk.is_postgres():
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_NAMESPACE + campaign_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_NAMESPACE + campaign_id])


def aggregation_run_execute(*, run_id: int) -> AggregationRun | None:
    """Claim the run, compute, and settle it; a finished run is left alone (idempotent)."""
    run = _run_claim(run_id)
    if run is None:
        return None
    try:
        with _campaign_lock(run.campaign_id):
            summary = campaign_results_compute(campaign=run.campaign, methods=run.methods, run=run)
    except Exception as exc:
        # Whatever broke, the run records why and ends FAILED rather than staying RUNNING.
        logger.exception("aggregation run %s failed", run_id)
        AggregationRun.objects.filter(pk=run_id).update(
            status=RunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        run.refresh_from_db()
        return run
    AggregationRun.objects.filter(pk=run_id).update(
        status=RunStatus.SUCCEEDED, summary=summary, finished_at=timezone.now(), error=""
    )
    run.refresh_from_db()
    return run


def periodic_runs_request() -> list[int]:
    """Queue a run for every running or paused campaign with judgments newer than its last
    finished run; return the run ids."""
    ids = []
    campaigns = Campaign.objects.filter(status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED])
    for campaign in campaigns:
        last = (
            AggregationRun.objects.filter(campaign=campaign, status=RunStatus.SUCCEEDED)
            .order_by("-started_at")
            .values_list("started_at", flat=True)
            .first()
        )
        newer = Judgment.objects.filter(campaign=campaign)
        if last is not None:
            newer = newer.filter(created_at__gte=last)
        if not newer.exists():
            continue
        run = aggregation_run_request(campaign=campaign, trigger=RunTrigger.PERIODIC)
        ids.append(run.pk)
    return ids


# Imports of external crowd data ------------------------------------------------------------------

IMPORT_TYPES = ("single_choice", "binary", "likert")
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n"})
IMPORT_SHORTCUTS = "123456789acdehijklmoqrtvwxyz"


@dataclass
class ImportReport:
    campaign: Campaign
    items: int
    gold_items: int
    judgments: int
    raters: int
    duplicates_dropped: int = 0
    model_versions: int = 0


def _answer_values(question_type: str, answers: set[str]) -> tuple[dict[str, object], list[str]]:
    """Map answer strings to schema values; errors for strings the type cannot take."""
    from annotation.schema import MAX_OPTIONS, VALUE_RE

    mapping: dict[str, object] = {}
    bad: list[str] = []
    for answer in sorted(answers):
        word = answer.strip().lower()
        if question_type == "binary":
            if word in TRUE_WORDS or word in FALSE_WORDS:
                mapping[answer] = word in TRUE_WORDS
            else:
                bad.append(answer)
        elif question_type == "likert":
            if word.isdigit() and 1 <= int(word) <= 5:
                mapping[answer] = int(word)
            else:
                bad.append(answer)
        elif VALUE_RE.match(word):
            mapping[answer] = word
        else:
            bad.append(answer)
    errors = []
    if bad:
        errors.append(
            f"{len(bad)} answer(s) do not fit a {question_type} question, e.g. {bad[0]!r}."
        )
    if question_type == "single_choice" and len(set(mapping.values())) > MAX_OPTIONS:
        errors.append(
            f"A single-choice question takes at most {MAX_OPTIONS} options, not "
            f"{len(set(mapping.values()))}."
        )
    if question_type == "single_choice" and len(set(mapping.values())) < 2:
        errors.append("A single-choice question needs at least two different answers.")
    return mapping, errors


def _import_question(key: str, label: str, question_type: str, values: list) -> dict:
    question = {"key": key, "type": question_type, "label": label}
    if question_type == "single_choice":
        ordered = sorted(
            set(values),
            key=lambda v: (not str(v).isdigit(), int(v) if str(v).isdigit() else 0, str(v)),
        )
        question["options"] = [
            {"value": v, "label": str(v), "shortcut": IMPORT_SHORTCUTS[i]}
            for i, v in enumerate(ordered)
        ]
    return question


def _slug(text: str) -> str:
    from django.utils.text import slugify

    return slugify(text)[:60] or "x"


def _import_raters(source: str, workers: list[str]) -> dict[str, int]:
    """One user per external worker, ``crowd-<source>-<worker>``, who cannot log in."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    names = {w: f"crowd-{_slug(source)}-{w}"[:150] for w in dict.fromkeys(workers)}
    user_model.objects.bulk_create(
        [user_model(username=name, password="!imported") for name in names.values()],
        batch_size=2000,
        ignore_conflicts=True,
    )
    ids = dict(
        user_model.objects.filter(username__in=list(names.values())).values_list("username", "id")
    )
    return {w: ids[name] for w, name in names.items()}


def _import_candidates(*, source: str, keys: list[str], model_versions: list | None = None):
    from generation.models import Candidate, CandidateKind, CandidateOrigin

    rows = [
        Candidate(
            kind=CandidateKind.STICKER,
            origin=CandidateOrigin.IMPORTED,
            model_version=model_versions[i] if model_versions else None,
            raw_prompt=key[:5000],
            file="",
            width=1,
            height=1,
            sha256="",
            import_source=source,
        )
        for i, key in enumerate(keys)
    ]
    return Candidate.objects.bulk_create(rows, batch_size=2000)


def _judgments_insert(*, campaign: Campaign, item_ids, rater_ids, answers_json, now) -> int:
    import uuid

    n = len(item_ids)
    return bulk.insert_columns(
        Judgment._meta.db_table,
        {
            "item_id": np.asarray(item_ids, dtype=np.int64),
            "rater_id": np.asarray(rater_ids, dtype=np.int64),
            "campaign_id": campaign.pk,
            "answers": np.asarray(answers_json, dtype=object),
            # Imported data carries no timing; 0 s marks it (speed checks are off on imports).
            "seconds_on_item": np.zeros(n),
            "client_id": np.array(
                [str(uuid.uuid4()) if bulk.is_postgres() else uuid.uuid4().hex for _ in range(n)],
                dtype=object,
            ),
            "skipped": False,
            "skip_reason": "",
            "excluded": False,
            "created_at": now.isoformat(),
        },
    )


def _item_counts_sync(campaign: Campaign) -> None:
    """Set each item's judgment count from its rows, raising targets that must hold them."""
    items, judgments = Item._meta.db_table, Judgment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {items} SET judgment_count = sub.n, overlap_target = CASE"
            " WHEN overlap_target < sub.n THEN sub.n ELSE overlap_target END"
            f" FROM (SELECT item_id, COUNT(*) AS n FROM {judgments} WHERE campaign_id = %s"
            f" AND NOT skipped GROUP BY item_id) AS sub WHERE {items}.id = sub.item_id",
            [campaign.pk],
        )


def _import_campaign(
    *, name: str, kind: str, question: dict, counts: list[int], source: str, created_by
) -> Campaign:
    from annotation import services as annotation_services

    modal = max(set(counts), key=counts.count) if counts else 1
    overlap = min(max(modal, 1), 50)
    campaign = annotation_services.campaign_create(
        name=name,
        kind=kind,
        question_schema=[question],
        overlap=overlap,
        max_overlap=min(max(max(counts, default=1), overlap), 50),
        guidelines=f"Imported from {source}.",
        created_by=created_by,
    )
    # Imported judgments carry no timing (0 s): no automatic pauses, no speed floor.
    QualityPolicy.objects.create(campaign=campaign, auto_pause=False, speed_floor_seconds=0.0)
    return campaign


def _import_finish(campaign: Campaign) -> None:
    from annotation import services as annotation_services

    _item_counts_sync(campaign)
    # Imported judgments are history: nobody rates this campaign.
    annotation_services.campaign_close(campaign=campaign)


@transaction.atomic
def crowd_labels_import(
    *,
    name: str,
    labels,
    source: str,
    question_type: str = "single_choice",
    question_key: str = "label",
    question_label: str = "Label",
    created_by: AbstractBaseUser | None = None,
) -> ImportReport:
    """Load external judgments (``crowd_formats.CrowdLabels``) as a closed single-candidate
    campaign: one imported candidate and item per external item, one user per worker, one
    judgment per (item, worker) (a repeat is dropped and counted), and the known answers as gold.
    ValidationError (nothing stored) when the answers do not fit the question type."""
    errors: dict[str, list[str]] = {}
    if question_type not in IMPORT_TYPES:
        errors["question_type"] = [f"Use one of {', '.join(IMPORT_TYPES)}, not {question_type!r}."]
    if not len(labels):
        errors["file"] = ["The file holds no judgments."]
    if errors:
        raise ValidationError(errors)
    mapping, problems = _answer_values(
        question_type, set(labels.answers) | set(labels.truth.values())
    )
    if problems:
        raise ValidationError({"file": problems})
    seen: set[tuple[str, str]] = set()
    rows = []
    for item, worker, answer in zip(labels.items, labels.workers, labels.answers, strict=True):
        if (item, worker) in seen:
            continue
        seen.add((item, worker))
        rows.append((item, worker, mapping[answer]))
    item_keys = list(dict.fromkeys(r[0] for r in rows))
    per_item: dict[str, int] = defaultdict(int)
    for item, _, _ in rows:
        per_item[item] += 1
    question = _import_question(question_key, question_label, question_type, list(mapping.values()))
    campaign = _import_campaign(
        name=name,
        kind=CampaignKind.SINGLE,
        question=question,
        counts=list(per_item.values()),
        source=source,
        created_by=created_by,
    )
    candidates = _import_candidates(source=source, keys=item_keys)
    gold_keys = [k for k in item_keys if k in labels.truth]
    plain_keys = [k for k in item_keys if k not in labels.truth]
    by_key = dict(zip(item_keys, candidates, strict=True))
    item_of: dict[str, int] = {}
    from annotation import services as annotation_services

    for keys, gold in ((gold_keys, True), (plain_keys, False)):
        if not keys:
            continue
        made = annotation_services.campaign_items_add(
            campaign=campaign,
            candidate_groups=[[by_key[k]] for k in keys],
            seed=0,
            gold_answers=[{question_key: mapping[labels.truth[k]]} for k in keys] if gold else None,
        )
        item_of.update({k: item.pk for k, item in zip(keys, made, strict=True)})
    raters = _import_raters(source, [r[1] for r in rows])
    now = timezone.now()
    _judgments_insert(
        campaign=campaign,
        item_ids=[item_of[r[0]] for r in rows],
        rater_ids=[raters[r[1]] for r in rows],
        answers_json=[json.dumps({question_key: r[2]}) for r in rows],
        now=now,
    )
    _import_finish(campaign)
    return ImportReport(
        campaign=campaign,
        items=len(item_keys),
        gold_items=len(gold_keys),
        judgments=len(rows),
        raters=len(raters),
        duplicates_dropped=len(labels) - len(rows),
    )


def _import_model_versions(source: str, names: list[str]) -> dict[str, ModelVersion]:
    from generation.models import ModelKind
    from generation.services.model_versions import model_version_register

    versions = {}
    for display in dict.fromkeys(names):
        slug = f"{_slug(source)}-{_slug(display)}"[:100]
        version = ModelVersion.objects.filter(name=slug).first() or model_version_register(
            name=slug,
            kind=ModelKind.IMAGE,
            uri=f"import:{source}/{display}",
            description=display,
            provenance={"import_source": source},
        )
        versions[display] = version
    return versions


@transaction.atomic
def crowd_comparisons_import(
    *,
    name: str,
    comparisons,
    source: str,
    question_key: str = "overall",
    question_label: str = "Which is better?",
    created_by: AbstractBaseUser | None = None,
) -> ImportReport:
    """Load external pairwise comparisons (``crowd_formats.CrowdComparisons``) as a closed pair
    campaign: one model version per compared system, one candidate per (prompt, system), and a
    pair item per comparison (a worker's repeat of a pair goes to a new item). The annotation
    app shuffles each item's display order; answers are flipped where it swapped the sides, so
    ``left`` always means the candidate shown on the left."""
    from annotation import services as annotation_services
    from annotation.schema import LEFT_TIE_RIGHT

    if not len(comparisons):
        raise ValidationError({"file": ["The file holds no comparisons."]})
    same = [
        i
        for i, (a, b) in enumerate(zip(comparisons.left, comparisons.right, strict=True))
        if a == b
    ]
    if same:
        raise ValidationError(
            {
                "file": [
                    f"Comparison {same[0] + 1} compares {comparisons.left[same[0]]!r} with itself."
                ]
            }
        )
    versions = _import_model_versions(source, [*comparisons.left, *comparisons.right])
    keys = list(
        dict.fromkeys(
            (p, m)
            for p, a, b in zip(
                comparisons.prompts, comparisons.left, comparisons.right, strict=True
            )
            for m in (a, b)
        )
    )
    candidates = dict(
        zip(
            keys,
            _import_candidates(
                source=source,
                keys=[f"{p} · {m}" if p else m for p, m in keys],
                model_versions=[versions[m] for _, m in keys],
            ),
            strict=True,
        )
    )
    workers = [w or "anonymous" for w in comparisons.workers]
    # Comparisons of the same pair on the same prompt share an item unless a worker repeats it.
    slots: dict[tuple, list[set]] = defaultdict(list)
    placement = []
    for prompt, a, b, worker in zip(
        comparisons.prompts, comparisons.left, comparisons.right, workers, strict=True
    ):
        pair = (prompt, *sorted((a, b)))
        for index, judged in enumerate(slots[pair]):
            if worker not in judged:
                judged.add(worker)
                placement.append((pair, index))
                break
        else:
            slots[pair].append({worker})
            placement.append((pair, len(slots[pair]) - 1))
    groups = [(pair, index) for pair, sets in slots.items() for index in range(len(sets))]
    counts = [len(sets[index]) for pair, sets in slots.items() for index in range(len(sets))]
    question = {
        "key": question_key,
        "type": "single_choice",
        "label": question_label,
        "options": LEFT_TIE_RIGHT,
    }
    campaign = _import_campaign(
        name=name,
        kind=CampaignKind.PAIR,
        question=question,
        counts=counts,
        source=source,
        created_by=created_by,
    )
    made = annotation_services.campaign_items_add(
        campaign=campaign,
        seed=campaign.pk,
        candidate_groups=[[candidates[(p, a)], candidates[(p, b)]] for (p, a, b), _ in groups],
    )
    item_of = {group: item.pk for group, item in zip(groups, made, strict=True)}
    shown_left = dict(
        ItemCandidate.objects.filter(item__campaign=campaign, position=0).values_list(
            "item_id", "candidate_id"
        )
    )
    raters = _import_raters(source, workers)
    flip = {"left": "right", "right": "left", "tie": "tie"}
    item_ids, rater_ids, answers = [], [], []
    for (pair, index), a, winner, worker in zip(
        placement, comparisons.left, comparisons.winner, workers, strict=True
    ):
        item_id = item_of[(pair, index)]
        left_is_a = shown_left[item_id] == candidates[(pair[0], a)].pk
        item_ids.append(item_id)
        rater_ids.append(raters[worker])
        answers.append(json.dumps({question_key: winner if left_is_a else flip[winner]}))
    _judgments_insert(
        campaign=campaign,
        item_ids=item_ids,
        rater_ids=rater_ids,
        answers_json=answers,
        now=timezone.now(),
    )
    _import_finish(campaign)
    return ImportReport(
        campaign=campaign,
        items=len(made),
        gold_items=0,
        judgments=len(item_ids),
        raters=len(raters),
        model_versions=len(versions),
    )
