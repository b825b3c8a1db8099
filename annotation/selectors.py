"""Annotation reads: campaign settings for the hot path, item payloads, progress."""

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from annotation import assignment
from annotation.models import (
    Campaign,
    CampaignMembership,
    CampaignStatus,
    Item,
    Judgment,
    Lease,
    MembershipStatus,
)


@dataclass(frozen=True)
class CampaignConfig:
    """What the rating path needs of a campaign. Fixed once the campaign has started (only the
    guidelines and examples may change then), so a process may keep it."""

    id: int
    name: str
    kind: str
    schema: list
    overlap: int
    max_overlap: int
    lease_seconds: int
    gold_rate: float
    needs_candidate_ids: bool


_configs: dict[int, CampaignConfig] = {}
_configs_lock = threading.Lock()


def campaign_config(campaign_id: int) -> CampaignConfig | None:
    """The campaign's rating settings; cached per process once the campaign has left draft."""
    config = _configs.get(campaign_id)
    if config is not None:
        return config
    row = (
        Campaign.objects.filter(pk=campaign_id)
        .values_list(
            "name",
            "kind",
            "question_schema",
            "overlap",
            "max_overlap",
            "lease_seconds",
            "gold_rate",
            "status",
        )
        .first()
    )
    if row is None:
        return None
    name, kind, schema, overlap, max_overlap, lease_seconds, gold_rate, status = row
    config = CampaignConfig(
        id=campaign_id,
        name=name,
        kind=kind,
        schema=schema,
        overlap=overlap,
        max_overlap=max_overlap,
        lease_seconds=lease_seconds,
        gold_rate=gold_rate,
        needs_candidate_ids=any(q.get("per_candidate") or q["type"] == "pick" for q in schema),
    )
    if status != CampaignStatus.DRAFT:
        with _configs_lock:
            _configs[campaign_id] = config
    return config


def campaign_config_forget(campaign_id: int) -> None:
    with _configs_lock:
        _configs.pop(campaign_id, None)


_media_prefix: str | None = None


def _media(candidate_id: int, part: str) -> str:
    """The rating screen's URL of one of a candidate's files.

    By candidate id rather than storage key: keys name the model version that made the file,
    and raters must not learn which model (or teacher) made what they judge. Built without a
    URL resolver call per file, since payloads carry many files.
    """
    global _media_prefix
    if _media_prefix is None:
        _media_prefix = reverse("rate-media", kwargs={"candidate_id": 0, "part": "file"})[
            : -len("0/file")
        ]
    return f"{_media_prefix}{candidate_id}/{part}"


def _candidate_payload(row: dict) -> dict:
    cid = row["id"]
    payload = {
        "id": cid,
        "position": row["position"],
        "side": row["side"],
        "kind": row["kind"],
        "url": _media(cid, "file") if row["file"] else "",
        "width": row["width"],
        "height": row["height"],
        "frame_count": row["frame_count"],
        "prompt": row["raw_prompt"],
        "motion_prompt": row["motion_prompt"],
        "fps": (_json(row["params"]) or {}).get("fps"),
        "frames": [],
        "source_url": "",
    }
    if row["kind"] == "animation":
        if row["frames_prefix"]:
            payload["frames"] = [_media(cid, f"frame-{i}") for i in range(row["frame_count"])]
        if row["source_file"]:
            payload["source_url"] = _media(cid, "source")
    return payload


def candidate_media_key(*, candidate_id: int, part: str, user) -> str | None:
    """The storage key behind a rating-screen media URL, or None when ``user`` may not see it.

    Staff roles see every candidate; a rater sees the candidates of the campaigns they belong to
    (items and guideline examples).
    """
    from generation.models import Candidate
    from stickerloop.roles import Role, has_role

    candidate = (
        Candidate.objects.filter(pk=candidate_id)
        .values("file", "frames_prefix", "frame_count", "source__file")
        .first()
    )
    if candidate is None:
        return None
    if not has_role(user, Role.CURATOR, Role.ML_ENGINEER):
        campaigns = CampaignMembership.objects.filter(rater=user).values("campaign_id")
        shown = Item.objects.filter(
            campaign_id__in=campaigns, item_candidates__candidate_id=candidate_id
        )
        example = Campaign.objects.filter(pk__in=campaigns).filter(
            Q(good_examples=candidate_id) | Q(bad_examples=candidate_id)
        )
        if not (shown.exists() or example.exists()):
            return None
    if part == "file":
        return candidate["file"] or None
    if part == "source":
        return candidate["source__file"] or None
    if part.startswith("frame-") and part[6:].isdigit() and candidate["frames_prefix"]:
        index = int(part[6:])
        if index < candidate["frame_count"]:
            return f"{candidate['frames_prefix']}frame-{index:03d}.png"
    return None


def _json(value):
    # SQLite hands JSON columns back as text from a raw query.
    return json.loads(value) if isinstance(value, str) else value


def item_payloads(*, item_ids: list[int], rows: list[dict] | None = None) -> list[dict]:
    """What the rating screen shows of each item, in the order of ``item_ids``.

    ``rows``: the payload rows when the rating step read them already; otherwise one query.
    The model version is left out on purpose: raters must not know which model (or teacher)
    made a candidate.
    """
    if not item_ids:
        return []
    if rows is None:
        rows = assignment.payload_rows(item_ids)
    by_item: dict[int, list[dict]] = {}
    for row in rows:
        by_item.setdefault(row["item_id"], []).append(_candidate_payload(row))
    return [
        {"id": item_id, "candidates": by_item[item_id]}
        for item_id in item_ids
        if item_id in by_item
    ]


def items_held(*, campaign_id: int, rater_id: int) -> list[int]:
    """The items the rater holds live leases on in the campaign, oldest lease first."""
    return list(
        Lease.objects.filter(
            campaign_id=campaign_id,
            rater_id=rater_id,
            released=False,
            expires_at__gt=timezone.now(),
        )
        .order_by("id")
        .values_list("item_id", flat=True)
    )


def judgment_last(*, campaign_id: int, rater_id: int) -> Judgment | None:
    return (
        Judgment.objects.filter(campaign_id=campaign_id, rater_id=rater_id)
        .order_by("-created_at", "-id")
        .first()
    )


def campaign_list() -> QuerySet[Campaign]:
    # The examples are prefetched with their sources: the campaigns API lists their ids and the
    # campaign page shows them (two queries for a list rather than two per campaign).
    from generation.models import Candidate

    examples = Candidate.objects.select_related("source")
    return (
        Campaign.objects.select_related("created_by")
        .prefetch_related(
            Prefetch("good_examples", queryset=examples),
            Prefetch("bad_examples", queryset=examples),
        )
        .order_by("-created_at", "-id")
        .annotate(
            item_count=Count("items", filter=Q(items__is_gold=False), distinct=True),
            rater_count=Count("memberships", distinct=True),
        )
    )


def campaign_progress(*, campaign: Campaign, active_minutes: int = 15) -> dict:
    """Items done, judgments, skips and active raters (judged in the last ``active_minutes``)."""
    return campaigns_progress(campaigns=[campaign], active_minutes=active_minutes)[campaign.pk]


def campaigns_progress(
    *, campaigns: Sequence[Campaign], active_minutes: int = 15
) -> dict[int, dict]:
    """``campaign_progress`` of each campaign, by campaign id: four queries for any number of
    campaigns (a list page asking campaign by campaign paid four per row)."""
    ids = [c.pk for c in campaigns]
    items = {
        row.pop("campaign_id"): row
        for row in Item.objects.filter(campaign_id__in=ids, is_gold=False)
        .values("campaign_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(judgment_count__gte=F("overlap_target"))),
            started=Count("id", filter=Q(judgment_count__gt=0)),
        )
        .order_by()
    }
    since = timezone.now() - timedelta(minutes=active_minutes)
    judgments = {
        row.pop("campaign_id"): row
        for row in Judgment.objects.filter(campaign_id__in=ids)
        .values("campaign_id")
        .annotate(
            judgments=Count("id", filter=Q(skipped=False)),
            skips=Count("id", filter=Q(skipped=True)),
            gold=Count("id", filter=Q(item__is_gold=True)),
            active_raters=Count("rater", filter=Q(created_at__gte=since), distinct=True),
        )
        .order_by()
    }
    leases = dict(
        Lease.objects.filter(campaign_id__in=ids, released=False)
        .values("campaign_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("campaign_id", "n")
    )
    members = dict(
        CampaignMembership.objects.filter(campaign_id__in=ids)
        .values("campaign_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("campaign_id", "n")
    )
    no_items = {"total": 0, "done": 0, "started": 0}
    no_judgments = {"judgments": 0, "skips": 0, "gold": 0, "active_raters": 0}
    progress = {}
    for pk in ids:
        item = items.get(pk, no_items)
        judged = judgments.get(pk, no_judgments)
        total = item["total"]
        progress[pk] = {
            "items": total,
            "items_done": item["done"],
            "items_started": item["started"],
            "percent_done": round(100 * item["done"] / total, 1) if total else 0.0,
            "judgments": judged["judgments"],
            "skips": judged["skips"],
            "gold_judgments": judged["gold"],
            "active_raters": judged["active_raters"],
            "live_leases": leases.get(pk, 0),
            "members": members.get(pk, 0),
        }
    return progress


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def rater_campaigns(*, rater: AbstractBaseUser) -> list[dict]:
    """The campaigns open to the rater (running or paused) with their own progress today."""
    today = _day_start(timezone.now())
    memberships = (
        CampaignMembership.objects.filter(
            rater=rater, campaign__status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]
        )
        .select_related("campaign")
        .order_by("-campaign__started_at", "campaign_id")
    )
    counts = {
        row["campaign_id"]: row
        for row in _judgments_since(rater, today)
        .values("campaign_id")
        .annotate(
            judged=Count("id", filter=Q(skipped=False)), skipped=Count("id", filter=Q(skipped=True))
        )
    }
    return [
        {
            "campaign": m.campaign,
            "membership": m,
            "can_rate": m.status == MembershipStatus.ACTIVE
            and m.campaign.status == CampaignStatus.RUNNING,
            "judged_today": counts.get(m.campaign_id, {}).get("judged", 0),
            "skipped_today": counts.get(m.campaign_id, {}).get("skipped", 0),
        }
        for m in memberships
    ]


def _judgments_since(rater: AbstractBaseUser, since: datetime) -> QuerySet[Judgment]:
    # By the rater's campaigns, so the (campaign, rater, created_at) index finds the rows.
    campaign_ids = CampaignMembership.objects.filter(rater=rater).values_list("campaign_id")
    return Judgment.objects.filter(campaign_id__in=campaign_ids, rater=rater, created_at__gte=since)


def rater_today(*, rater: AbstractBaseUser) -> dict:
    today = _day_start(timezone.now())
    return _judgments_since(rater, today).aggregate(
        judged=Count("id", filter=Q(skipped=False)), skipped=Count("id", filter=Q(skipped=True))
    )
