"""Rows for quality tests: campaigns, candidates, items and judgments, written in bulk.

Judgments are created directly rather than through ``judgment_submit``: these tests are about
what quality control makes of judgments, not about leases.
"""

import itertools
import uuid

from django.contrib.auth import get_user_model
from django.db.models.functions import Greatest

from annotation.models import Campaign, CampaignMembership, Item, ItemCandidate, Judgment
from generation.models import Candidate, CandidateKind, CandidateOrigin

_counter = itertools.count(1)


def campaign(
    *,
    questions: list[dict],
    kind: str = "single",
    overlap: int = 3,
    max_overlap: int | None = None,
    gold_rate: float = 0.0,
    name: str = "",
) -> Campaign:
    from annotation.schema import normalise_schema

    return Campaign.objects.create(
        name=name or f"campaign-{next(_counter)}",
        kind=kind,
        status="running",
        question_schema=normalise_schema(questions, kind=kind),
        overlap=overlap,
        max_overlap=max_overlap or overlap,
        gold_rate=gold_rate,
    )


def candidates(n: int, *, model_version=None) -> list[Candidate]:
    rows = [
        Candidate(
            kind=CandidateKind.STICKER,
            origin=CandidateOrigin.IMPORTED if model_version is None else CandidateOrigin.GENERATED,
            model_version=model_version,
            raw_prompt=f"thing {next(_counter)}",
            file="",
            width=64,
            height=64,
            sha256="0" * 64,
        )
        for _ in range(n)
    ]
    return Candidate.objects.bulk_create(rows)


def items(camp: Campaign, n: int, *, per_item: int = 1, gold: dict | None = None) -> list[Item]:
    """``n`` items of ``per_item`` fresh candidates each; ``gold`` maps index -> gold answers."""
    gold = gold or {}
    made = Item.objects.bulk_create(
        [
            Item(
                campaign=camp,
                overlap_target=camp.overlap,
                is_gold=i in gold,
                gold_answers=gold.get(i),
            )
            for i in range(n)
        ]
    )
    cands = candidates(n * per_item)
    ItemCandidate.objects.bulk_create(
        [
            ItemCandidate(
                item=item,
                candidate=cands[i * per_item + p],
                position=p,
                side=("left", "right")[p] if per_item == 2 else "",
            )
            for i, item in enumerate(made)
            for p in range(per_item)
        ]
    )
    return made


def raters(n: int, prefix: str = "r", *, campaign: Campaign | None = None) -> list:
    """``n`` users with the rater role; members of ``campaign`` when given."""
    from django.contrib.auth.models import Group

    User = get_user_model()
    tag = next(_counter)
    users = User.objects.bulk_create([User(username=f"{prefix}{tag}-{i}") for i in range(n)])
    group, _ = Group.objects.get_or_create(name="rater")
    group.user_set.add(*users)
    if campaign is not None:
        CampaignMembership.objects.bulk_create(
            [CampaignMembership(campaign=campaign, rater=u) for u in users]
        )
    return users


def judge(
    item: Item,
    rater,
    answers: dict,
    *,
    seconds: float = 3.0,
    skipped: bool = False,
    excluded: bool = False,
    at=None,
) -> Judgment:
    judgment = Judgment.objects.create(
        item=item,
        rater=rater,
        campaign_id=item.campaign_id,
        answers=answers,
        seconds_on_item=seconds,
        client_id=uuid.uuid4(),
        skipped=skipped,
        skip_reason="unclear" if skipped else "",
        excluded=excluded,
    )
    if at is not None:
        Judgment.objects.filter(pk=judgment.pk).update(created_at=at)
    counted = item.judgments.filter(skipped=False, excluded=False).count()
    Item.objects.filter(pk=item.pk).update(
        judgment_count=counted, overlap_target=Greatest("overlap_target", counted)
    )
    return judgment
