"""Gold items (setting, adding, promoting) and scoring judgments against them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import (
    Campaign,
    Item,
    Judgment,
)
from annotation.quality import aggregation, selectors
from annotation.quality.models import (
    ConsensusResult,
    GoldScore,
    QualityPolicy,
    QuestionResult,
)
from annotation.quality.services.membership import qualification_gate_apply
from annotation.quality.services.policy import is_number
from annotation.services.items import campaign_items_add
from stickerloop.errors import ServiceConflict


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
    return campaign_items_add(
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
    if not is_number(min_confidence) or not 0.5 <= min_confidence <= 1.0:
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
