"""Quality reads: judgments as compact arrays, stored results, rater tables, rankings.

``item_consensus`` is the contract curation builds on: stored results when a run has produced
them for that campaign, question and method, else the method computed on the fly from the
judgments that count (not excluded, not skipped; gold items included, callers filter).
``item_picks`` is its counterpart for questions whose answers pick a shown candidate (best of N,
side by side): who won each item, and by what share of its judgments.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Avg, Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignMembership,
    CampaignStatus,
    ItemCandidate,
    Judgment,
)
from annotation.quality import aggregation, bulk
from annotation.quality.aggregation import ItemConsensus, ItemPick, Responses
from annotation.quality.models import (
    AggregationRun,
    AgreementResult,
    ConsensusResult,
    GoldScore,
    QualityPolicy,
    QuestionResult,
    RankingResult,
    RaterQuality,
    RunStatus,
)
from stickerloop.roles import Role

__all__ = [
    "ItemConsensus",
    "ItemPick",
    "item_consensus",
    "item_candidate_consensus",
    "item_picks",
    "methods_for_question",
    "question_responses",
]

# Which consensus methods fit which question type. Text, multi_choice and pick answers have no
# single label to agree on; the probabilistic models treat a Likert scale as categories.
METHODS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "binary": aggregation.CATEGORICAL_METHODS,
    "single_choice": aggregation.CATEGORICAL_METHODS,
    "likert": (*aggregation.CATEGORICAL_METHODS, *aggregation.SCALE_METHODS),
    "multi_choice": (),
    "text": (),
    "pick": (),
}
ALPHA_LEVEL_BY_TYPE = {"binary": "nominal", "single_choice": "nominal", "likert": "ordinal"}


def campaign_questions(campaign: Campaign) -> list[dict]:
    return list(campaign.question_schema or [])


def question_of(campaign: Campaign, question_key: str) -> dict:
    """The schema entry of ``question_key``; ValidationError naming the field if unknown."""
    for question in campaign_questions(campaign):
        if question.get("key") == question_key:
            return question
    keys = ", ".join(q.get("key", "?") for q in campaign_questions(campaign)) or "none"
    raise ValidationError(
        {"question_key": [f"Campaign {campaign.pk} has no question {question_key!r} ({keys})."]}
    )


def methods_for_question(question: dict) -> tuple[str, ...]:
    return METHODS_BY_TYPE.get(question.get("type", ""), ())


def check_method(question: dict, method: str) -> None:
    """ValidationError when ``method`` cannot aggregate answers of the question's type."""
    fitting = methods_for_question(question)
    if method not in aggregation.ALL_METHODS:
        raise ValidationError(
            {
                "method": [
                    f"Unknown consensus method {method!r}; use one of "
                    f"{', '.join(aggregation.ALL_METHODS)}."
                ]
            }
        )
    if method not in fitting:
        allowed = ", ".join(fitting) if fitting else "none"
        raise ValidationError(
            {
                "method": [
                    f"Method {method!r} does not fit question {question['key']!r} of type "
                    f"{question['type']!r} (methods that fit: {allowed})."
                ]
            }
        )


def question_labels(question: dict) -> tuple:
    return tuple(option["value"] for option in question.get("options") or [])


# Loading judgments as arrays ---------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """For per-candidate questions the unit of consensus is (item, candidate): ``Responses``
    then carries unit numbers in ``item_ids`` and this maps them back."""

    item_ids: np.ndarray
    candidate_ids: np.ndarray


def _json_text(value) -> str:
    """The text PostgreSQL prints for a jsonb value, for matching answers to options."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _read_postgres(campaign_id: int, key: str, per_candidate: bool, options):
    import pandas as pd

    table = Judgment._meta.db_table
    where = "j.campaign_id = %s AND NOT j.excluded AND NOT j.skipped AND j.answers ? %s"
    if per_candidate:
        sql = (
            f"SELECT j.item_id, j.rater_id, e.key, e.value FROM {table} j "
            f"CROSS JOIN LATERAL jsonb_each(CASE jsonb_typeof(j.answers -> %s) WHEN 'object' "
            f"THEN j.answers -> %s ELSE '{{}}'::jsonb END) e WHERE {where}"
        )
        params = [key, key, campaign_id, key]
        names = ["item", "rater", "candidate", "answer"]
    else:
        sql = f"SELECT j.item_id, j.rater_id, j.answers -> %s FROM {table} j WHERE {where}"
        params = [key, campaign_id, key]
        names = ["item", "rater", "answer"]
    return pd.read_csv(
        bulk.copy_select(sql, params),
        sep="\t",
        header=None,
        names=names,
        quoting=3,
        dtype={"item": np.int64, "rater": np.int64, "candidate": str, "answer": options},
        keep_default_na=False,
        na_filter=False,
    )


def _read_generic(campaign_id: int, key: str, per_candidate: bool):
    import pandas as pd

    rows = Judgment.objects.filter(
        campaign_id=campaign_id, excluded=False, skipped=False, answers__has_key=key
    ).values_list("item_id", "rater_id", "answers")
    records = []
    for item_id, rater_id, answers in rows.iterator(chunk_size=5000):
        value = answers.get(key)
        if per_candidate:
            if isinstance(value, dict):
                records += [(item_id, rater_id, str(c), _json_text(v)) for c, v in value.items()]
        else:
            records.append((item_id, rater_id, _json_text(value)))
    names = (
        ["item", "rater", "candidate", "answer"] if per_candidate else ["item", "rater", "answer"]
    )
    return pd.DataFrame.from_records(records, columns=names)


def question_responses(*, campaign: Campaign, question: dict) -> tuple[Responses, Units | None]:
    """The answers that count for ``question`` as arrays.

    Answers that are not among the question's options (left over from an earlier schema) are
    dropped. For per-candidate questions the returned ``Units`` maps unit numbers to
    (item, candidate).
    """
    import pandas as pd

    key = question["key"]
    per_candidate = bool(question.get("per_candidate"))
    labels = question_labels(question)
    # The answers are read as a categorical of the options' JSON texts: each answer is a small
    # code, one outside the options a missing one (-1), where a column of text made a Python
    # string of every answer: about 100 bytes each, measured over 300,000 judgments in a
    # dataset build (so some 300 MB for a million-item campaign's 3,000,000).
    options = pd.CategoricalDtype([_json_text(v) for v in labels])
    if connection.vendor == "postgresql":
        frame = _read_postgres(campaign.pk, key, per_candidate, options)
    else:
        frame = _read_generic(campaign.pk, key, per_candidate).astype({"answer": options})
    codes = frame["answer"].cat.codes.to_numpy().astype(np.int64)
    keep = codes >= 0
    frame = frame[keep]
    codes = codes[keep]
    units = None
    items = frame["item"].to_numpy(dtype=np.int64)
    if per_candidate:
        candidates = frame["candidate"].astype(np.int64).to_numpy()
        pairs = np.stack([items, candidates], axis=1) if len(items) else np.empty((0, 2), np.int64)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        units = Units(item_ids=unique[:, 0], candidate_ids=unique[:, 1])
        items = inverse.reshape(-1).astype(np.int64)
    values = None
    if question.get("type") == "likert":
        scale = np.array([float(v) for v in labels])
        values = scale[codes]
    responses = Responses(
        item_ids=items,
        rater_ids=frame["rater"].to_numpy(dtype=np.int64),
        codes=codes,
        labels=labels,
        values=values,
    )
    return responses, units


# Consensus ---------------------------------------------------------------------------------------


def _stored(campaign_id: int, question_key: str, method: str) -> bool:
    return QuestionResult.objects.filter(
        campaign_id=campaign_id, question_key=question_key, method=method
    ).exists()


def _from_rows(rows) -> ItemConsensus:
    label, confidence, n, tie, tied, mean, median = rows
    return ItemConsensus(
        label=label,
        confidence=confidence,
        n_judgments=n,
        is_tie=tie,
        mean=mean,
        median=median,
        tied_labels=tuple(tied or ()),
    )


_ROW_FIELDS = ("label", "confidence", "n_judgments", "is_tie", "tied_labels", "mean", "median")


def _campaign_and_question(campaign_id: int, question_key: str, method: str):
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
    except Campaign.DoesNotExist as exc:
        raise ValidationError({"campaign": [f"No campaign {campaign_id}."]}) from exc
    question = question_of(campaign, question_key)
    check_method(question, method)
    return campaign, question


def _consensus_question(
    campaign_id: int, question_key: str, method: str, *, per_candidate: bool
) -> tuple[Campaign, dict]:
    """``_campaign_and_question``, refusing a question that is (or is not) answered per
    candidate when ``per_candidate`` says the other."""
    campaign, question = _campaign_and_question(campaign_id, question_key, method)
    if bool(question.get("per_candidate")) != per_candidate:
        answered, reader = (
            ("is not answered", "item_consensus")
            if per_candidate
            else ("is answered", "item_candidate_consensus")
        )
        raise ValidationError(
            {
                "question_key": [
                    f"Question {question_key!r} {answered} per candidate; read it with {reader}."
                ]
            }
        )
    return campaign, question


def _stored_rows(campaign_id: int, question_key: str, method: str, *, per_candidate: bool):
    """The stored consensus of one question and method, row by row: the item id (and candidate
    id, per candidate), then ``_ROW_FIELDS``."""
    keys = ("item_id", "candidate_id") if per_candidate else ("item_id",)
    return (
        ConsensusResult.objects.filter(
            campaign_id=campaign_id,
            question_key=question_key,
            method=method,
            candidate__isnull=not per_candidate,
        )
        .values_list(*keys, *_ROW_FIELDS)
        .iterator(chunk_size=10000)
    )


def item_consensus(
    *, campaign_id: int, question_key: str, method: str = aggregation.MAJORITY
) -> dict[int, ItemConsensus]:
    """Consensus per item id for one question and method.

    Reads the stored results of the latest aggregation run when there are any for this campaign,
    question and method; otherwise computes the method now from the judgments that count
    (non-excluded, non-skipped). Gold items are included; callers filter. Raises
    ValidationError for an unknown campaign or question, or a method that does not fit the
    question's type, and for per-candidate questions (use ``item_candidate_consensus``).
    """
    found = item_consensus_lookup(campaign_id=campaign_id, question_key=question_key, method=method)
    return found if isinstance(found, dict) else found.as_dict()


def item_consensus_lookup(
    *, campaign_id: int, question_key: str, method: str = aggregation.MAJORITY
) -> Mapping[int, ItemConsensus]:
    """``item_consensus`` for a caller that looks items up one at a time (a dataset build):
    consensus computed now stays the method's arrays and each item's value is made when it is
    asked for (``aggregation.ConsensusLookup``); stored results come as ``item_consensus``
    gives them."""
    campaign, question = _consensus_question(campaign_id, question_key, method, per_candidate=False)
    if _stored(campaign_id, question_key, method):
        rows = _stored_rows(campaign_id, question_key, method, per_candidate=False)
        return {row[0]: _from_rows(row[1:]) for row in rows}
    responses, _ = question_responses(campaign=campaign, question=question)
    if not len(responses):
        return {}
    return aggregation.consensus(responses, method=method).lookup()


def item_candidate_consensus(
    *, campaign_id: int, question_key: str, method: str = aggregation.MAJORITY
) -> dict[tuple[int, int], ItemConsensus]:
    """Like ``item_consensus`` for per-candidate questions, keyed by (item id, candidate id)."""
    campaign, question = _consensus_question(campaign_id, question_key, method, per_candidate=True)
    if _stored(campaign_id, question_key, method):
        rows = _stored_rows(campaign_id, question_key, method, per_candidate=True)
        return {(row[0], row[1]): _from_rows(row[2:]) for row in rows}
    responses, units = question_responses(campaign=campaign, question=question)
    if not len(responses):
        return {}
    table = aggregation.consensus(responses, method=method)
    return {
        (int(units.item_ids[u]), int(units.candidate_ids[u])): table.consensus(i)
        for i, u in enumerate(table.item_ids)
    }


# Picks -------------------------------------------------------------------------------------------

# A pair question's answers credit the candidates by display position (0: left, 1: right), a tie
# half to each, as the side-by-side win rates count them.
PAIR_CREDIT: dict[str, dict[int, float]] = {
    "left": {0: 1.0},
    "right": {1: 1.0},
    "tie": {0: 0.5, 1: 0.5},
}


def is_pair_question(campaign: Campaign, question: dict) -> bool:
    """A side-by-side question: one choice of a pair campaign, answered left or right."""
    return (
        campaign.kind == CampaignKind.PAIR
        and question.get("type") == "single_choice"
        and {"left", "right"} <= set(question_labels(question))
        and not question.get("per_candidate")
    )


def is_pick_question(campaign: Campaign, question: dict) -> bool:
    """Whether the question's answers pick one of the shown candidates: a pick question (best of
    N) or a pair question."""
    return question.get("type") == "pick" or is_pair_question(campaign, question)


def pick_question_keys(campaign: Campaign) -> list[str]:
    return [q["key"] for q in campaign_questions(campaign) if is_pick_question(campaign, q)]


def item_picks(*, campaign_id: int, question_key: str) -> dict[int, ItemPick]:
    """Per item id, the candidate its judgments picked for a pick or pair question, from the
    judgments that count (non-excluded, non-skipped). Gold items are included; callers filter.

    A pick question counts every such judgment, one that picked none (an optional pick left
    empty) included: a share is of the raters who judged the item. A pair question counts the
    judgments answering left, right or tie, a tie half for each side, as the win rates do.
    Raises ValidationError for an unknown campaign or question, or one that picks nothing.
    """
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
    except Campaign.DoesNotExist as exc:
        raise ValidationError({"campaign": [f"No campaign {campaign_id}."]}) from exc
    question = question_of(campaign, question_key)
    if not is_pick_question(campaign, question):
        raise ValidationError(
            {
                "question_key": [
                    f"Question {question_key!r} is a {question.get('type')} question; picks come "
                    "from pick questions and pair questions."
                ]
            }
        )
    answers = (
        Judgment.objects.filter(campaign_id=campaign_id, skipped=False, excluded=False)
        .values_list("item_id", f"answers__{question_key}")
        .iterator(chunk_size=10000)
    )
    if question.get("type") == "pick":
        # Stored picks name candidates by id (see ``annotation.schema.answers_by_candidate``).
        return aggregation.pick_winners(
            (item, {} if value is None else {value: 1.0}) for item, value in answers
        )
    shown: dict[int, dict[int, int]] = defaultdict(dict)
    for item, position, candidate in (
        ItemCandidate.objects.filter(item__campaign_id=campaign_id, position__lt=2)
        .values_list("item_id", "position", "candidate_id")
        .iterator(chunk_size=10000)
    ):
        shown[item][position] = candidate
    return aggregation.pick_winners(
        (item, {shown[item][p]: w for p, w in PAIR_CREDIT[value].items()})
        for item, value in answers
        if value in PAIR_CREDIT
    )


# Stored results for pages and APIs ---------------------------------------------------------------


def policy_for(campaign: Campaign) -> QualityPolicy:
    """The campaign's policy, or an unsaved one with the defaults."""
    try:
        return campaign.quality_policy
    except QualityPolicy.DoesNotExist:
        return QualityPolicy(campaign=campaign)


def agreement_results(*, campaign: Campaign) -> list[AgreementResult]:
    return list(AgreementResult.objects.filter(campaign=campaign).order_by("question_key"))


def question_results(*, campaign: Campaign) -> list[QuestionResult]:
    return list(QuestionResult.objects.filter(campaign=campaign).order_by("question_key", "method"))


def _rater_row(quality: RaterQuality | None, membership: CampaignMembership | None) -> dict:
    """A rater's figures in one campaign and their membership there, as the pages show them."""
    return {
        "status": membership.status if membership else "",
        "paused_reason": membership.paused_reason if membership else "",
        "paused_at": membership.paused_at if membership else None,
        "n_judgments": quality.n_judgments if quality else 0,
        "n_gold": quality.n_gold if quality else 0,
        "gold_accuracy": quality.gold_accuracy if quality else None,
        "consensus_agreement": quality.consensus_agreement if quality else None,
        "n_consensus": quality.n_consensus if quality else 0,
        "median_seconds": quality.median_seconds if quality else None,
        "fast_share": quality.fast_share if quality else None,
        "reliability": quality.reliability if quality else {},
        "computed_at": quality.computed_at if quality else None,
    }


def rater_table(*, campaign: Campaign) -> list[dict]:
    """One row per rater with judgments or a quality record: figures, membership state, why."""
    qualities = {
        q.rater_id: q
        for q in RaterQuality.objects.filter(campaign=campaign).select_related("rater")
    }
    memberships = {
        m.rater_id: m
        for m in CampaignMembership.objects.filter(campaign=campaign).select_related("rater")
    }
    rows = []
    for rater_id in sorted(set(qualities) | set(memberships)):
        quality = qualities.get(rater_id)
        membership = memberships.get(rater_id)
        user = (quality or membership).rater
        rows.append(
            {
                "rater_id": rater_id,
                "username": user.get_username(),
                **_rater_row(quality, membership),
            }
        )
    return rows


def rater_campaigns_quality(*, rater_id: int) -> list[dict]:
    """The other view of ``rater_table``: one row per campaign the rater is a member of or has
    a quality record in, newest campaign first, with the same figures. Two queries."""
    qualities = {
        q.campaign_id: q
        for q in RaterQuality.objects.filter(rater_id=rater_id).select_related("campaign")
    }
    memberships = {
        m.campaign_id: m
        for m in CampaignMembership.objects.filter(rater_id=rater_id).select_related("campaign")
    }
    rows = []
    for campaign_id in sorted(set(qualities) | set(memberships), reverse=True):
        quality = qualities.get(campaign_id)
        membership = memberships.get(campaign_id)
        rows.append(
            {"campaign": (membership or quality).campaign, **_rater_row(quality, membership)}
        )
    return rows


def ranking_results(*, campaign: Campaign) -> list[RankingResult]:
    return list(
        RankingResult.objects.filter(campaign=campaign)
        .prefetch_related("strengths__model_version")
        .order_by("question_key")
    )


@dataclass(frozen=True)
class QualificationState:
    required: bool
    passed: bool
    n_gold: int
    accuracy: float | None
    reason: str


def qualification_state(*, campaign: Campaign, rater_id: int) -> QualificationState:
    """Whether the rater has passed the qualification campaign that ``campaign`` requires: at
    least ``qualification_min_gold`` scored gold judgments there, with mean score at or above
    ``qualification_min_accuracy``. Read live from the gold scores (one query)."""
    policy = policy_for(campaign)
    if policy.qualification_campaign_id is None:
        return QualificationState(required=False, passed=True, n_gold=0, accuracy=None, reason="")
    figures = GoldScore.objects.filter(
        campaign_id=policy.qualification_campaign_id, rater_id=rater_id
    ).aggregate(n=Count("id"), accuracy=Avg("score"))
    n, accuracy = figures["n"], figures["accuracy"]
    passed = (
        n >= policy.qualification_min_gold
        and accuracy is not None
        and accuracy >= policy.qualification_min_accuracy
    )
    so_far = f"so far {n}" + (f" at {accuracy:.0%}" if accuracy is not None else "")
    reason = (
        ""
        if passed
        else f"Pass the qualification campaign {policy.qualification_campaign.name!r} first: "
        f"{policy.qualification_min_gold} gold items at "
        f"{policy.qualification_min_accuracy:.0%} or better ({so_far})."
    )
    return QualificationState(
        required=True, passed=passed, n_gold=n, accuracy=accuracy, reason=reason
    )


def rater_is_qualified(*, campaign: Campaign, rater_id: int) -> bool:
    """For the rating path: may the campaign's queue open to this rater, as far as
    qualification goes?"""
    return qualification_state(campaign=campaign, rater_id=rater_id).passed


def is_pair_campaign(campaign: Campaign) -> bool:
    return campaign.kind == CampaignKind.PAIR


def passing_stickers(*, campaign: Campaign, question_key: str, label) -> list[int]:
    """The sticker candidates of the campaign's non-gold items whose majority consensus on
    ``question_key`` is ``label`` (ties pass nothing), by id. ValidationError as for
    ``item_consensus``."""
    consensus = item_consensus(campaign_id=campaign.pk, question_key=question_key)
    passing = [item_id for item_id, c in consensus.items() if not c.is_tie and c.label == label]
    return list(
        ItemCandidate.objects.filter(
            item_id__in=passing, item__is_gold=False, candidate__kind="sticker"
        )
        .order_by("candidate_id")
        .values_list("candidate_id", flat=True)
        .distinct()
    )


# A campaign closed this recently still gets its last judgments aggregated by the periodic
# check; older ones are left out, so that closed campaigns do not cost the check a scan each.
CLOSED_CAMPAIGN_GRACE = timedelta(hours=1)


def campaigns_with_new_judgments() -> list[Campaign]:
    """Campaigns whose stored results miss judgments: those with a judgment made at or after
    the start of their last successful run (or with judgments and no such run), among the
    running and paused ones and those closed in the last CLOSED_CAMPAIGN_GRACE (judgments
    made just before closing still count). One query, whatever the number of campaigns: beat
    asks every QUALITY_AGGREGATE_EVERY_SECONDS. A candidate with nothing new costs a scan of
    its (campaign, rater, created_at) index entries."""
    recently_closed = Q(closed_at__gte=timezone.now() - CLOSED_CAMPAIGN_GRACE) & (
        Q(last_run_at__isnull=True) | Q(closed_at__gte=F("last_run_at"))
    )
    return list(
        _results_behind(Campaign.objects.all())
        .filter(Q(status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]) | recently_closed)
        .order_by("pk")
    )


def _results_behind(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """``campaigns`` whose stored results miss judgments, annotated with ``last_run_at``: the
    start of their last successful run. Behind means judgments and no such run, or a judgment
    made at or after that start (one made while the run read the campaign may be unread)."""
    last_run_at = (
        AggregationRun.objects.filter(campaign=OuterRef("pk"), status=RunStatus.SUCCEEDED)
        .order_by("-started_at")
        .values("started_at")[:1]
    )
    judgments = Judgment.objects.filter(campaign=OuterRef("pk"))
    return campaigns.annotate(last_run_at=Subquery(last_run_at)).filter(
        Q(Exists(judgments), last_run_at__isnull=True)
        | Q(Exists(judgments.filter(created_at__gte=OuterRef("last_run_at"))))
    )


def raters_overview():
    """Users holding the rater role, by username, each with ``campaign_count`` (memberships).
    One query per page."""
    return (
        get_user_model()
        .objects.filter(groups__name=Role.RATER)
        .annotate(campaign_count=Count("campaign_memberships", distinct=True))
        .order_by("username")
        .distinct()
    )


def campaigns_results_behind() -> QuerySet[Campaign]:
    """Campaigns (not drafts) whose stored results miss judgments, as beat's periodic
    aggregation sees it (``_results_behind``), newest judgment first. One query."""
    last_judgment = (
        Judgment.objects.filter(campaign=OuterRef("pk"))
        .order_by("-created_at")
        .values("created_at")
    )
    return (
        _results_behind(Campaign.objects.exclude(status=CampaignStatus.DRAFT))
        .annotate(last_judgment=Subquery(last_judgment[:1]))
        .order_by("-last_judgment", "-id")
    )
