"""Annotation reads: campaign settings for the hot path, item payloads, progress."""

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.utils import timezone

from annotation import assignment
from annotation.models import (
    Campaign,
    CampaignMembership,
    CampaignStatus,
    Item,
    ItemCandidate,
    ItemLoad,
    Judgment,
    Lease,
    MembershipStatus,
    RaterPrompt,
)
from generation.models import frame_key
from stickerloop import media


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
    rater_prompt: str


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
            "rater_prompt",
            "status",
        )
        .first()
    )
    if row is None:
        return None
    name, kind, schema, overlap, max_overlap, lease_seconds, gold_rate, rater_prompt, status = row
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
        rater_prompt=rater_prompt,
    )
    if status != CampaignStatus.DRAFT:
        with _configs_lock:
            _configs[campaign_id] = config
    return config


def campaign_config_forget(campaign_id: int) -> None:
    with _configs_lock:
        _configs.pop(campaign_id, None)


def prompt_shown(*, raw_prompt: str, enhanced_prompt: str, rater_prompt: str) -> str:
    """The prompt a campaign shows raters: as written, or enhanced (as written where there is
    no enhanced prompt)."""
    if rater_prompt == RaterPrompt.ENHANCED:
        return enhanced_prompt or raw_prompt
    return raw_prompt


def _candidate_payload(row: dict, token: str, rater_prompt: str) -> dict:
    """One shown candidate as the rater gets it: named by its position in the item (answers use
    it too), its files by URLs under the item's grant, and the prompt the campaign shows. No
    candidate id, storage key or model: the display order is shuffled per item, so nothing here
    says which model made what."""
    position = row["position"]
    payload = {
        "position": position,
        "side": row["side"],
        "kind": row["kind"],
        "url": media.granted_url(token, position, "file") if row["file"] else "",
        "width": row["width"],
        "height": row["height"],
        "frame_count": row["frame_count"],
        "prompt": prompt_shown(
            raw_prompt=row["raw_prompt"],
            enhanced_prompt=row["enhanced_prompt"],
            rater_prompt=rater_prompt,
        ),
        "motion_prompt": row["motion_prompt"],
        "fps": (_json(row["params"]) or {}).get("fps"),
        "frames": [],
        "strip_url": "",
        "source_url": "",
    }
    if row["kind"] == "animation":
        if row["frames_prefix"]:
            payload["frames"] = [
                media.granted_url(token, position, f"frame-{i}") for i in range(row["frame_count"])
            ]
            payload["strip_url"] = media.granted_url(token, position, STRIP_PART)
        if row["source_file"]:
            payload["source_url"] = media.granted_url(token, position, "source")
    return payload


# The part of a rater's media URL that names an animation's frame strip
# (``generation.services.strips``): made on first request where it is missing.
STRIP_PART = "strip"

# Scopes of a rater's media grant (``stickerloop.media.grant_token``): one item, or the good or
# bad guideline examples of a campaign.
ITEM_SCOPE, GOOD_EXAMPLES_SCOPE, BAD_EXAMPLES_SCOPE = "i", "g", "b"


def item_media_token(*, item_id: int, rater_id: int) -> str:
    return media.grant_token(user_id=rater_id, scope=f"{ITEM_SCOPE}{item_id}")


def examples_media_urls(
    *, campaign_id: int, rater_id: int, good: bool, candidates, rater_prompt: str
) -> list[dict]:
    """The guideline examples as a rater gets them: by position under a grant for the
    campaign's examples, in id order (``rater_media_key`` finds them so), with the prompt the
    campaign shows."""
    scope = f"{GOOD_EXAMPLES_SCOPE if good else BAD_EXAMPLES_SCOPE}{campaign_id}"
    token = media.grant_token(user_id=rater_id, scope=scope)
    return [
        {
            "kind": c.kind,
            "url": media.granted_url(token, position, "file") if c.file else "",
            "prompt": prompt_shown(
                raw_prompt=c.raw_prompt,
                enhanced_prompt=c.enhanced_prompt,
                rater_prompt=rater_prompt,
            ),
            "source_url": media.granted_url(token, position, "source") if c.source_id else "",
        }
        for position, c in enumerate(sorted(candidates, key=lambda c: c.pk))
    ]


def _part_key(file: str, frames_prefix: str, frame_count: int, source_file: str | None, part):
    if part == "file":
        return file or None
    if part == "source":
        return source_file or None
    if part.startswith("frame-") and part[6:].isdigit() and frames_prefix:
        index = int(part[6:])
        if index < frame_count:
            return frame_key(frames_prefix, index)
    return None


def _rater_candidate_files(*, rater_id: int, scope: str, position: int) -> tuple | None:
    """(file, frames_prefix, frame_count, source file) of the candidate at ``position`` in a
    grant's ``scope``, or None when the rater may not see it.

    The rule for raters: an item's files while they hold a live lease on it or after they
    judged (or skipped) it; a campaign's guideline examples while they belong to it. Staff
    roles use the staff media URLs (``stickerloop.media.staff_may_view``) instead.
    """
    from generation.models import Candidate

    kind, number = scope[:1], scope[1:]
    if not number.isdigit():
        return None
    fields = ("file", "frames_prefix", "frame_count", "source__file")
    if kind == ITEM_SCOPE:
        item_id = int(number)
        may_see = Exists(
            Lease.objects.filter(
                item_id=item_id, rater_id=rater_id, released=False, expires_at__gt=timezone.now()
            )
        ) | Exists(Judgment.objects.filter(item_id=item_id, rater_id=rater_id))
        return (
            ItemCandidate.objects.filter(may_see, item_id=item_id, position=position)
            .values_list(*(f"candidate__{f}" for f in fields))
            .first()
        )
    if kind in (GOOD_EXAMPLES_SCOPE, BAD_EXAMPLES_SCOPE):
        campaign_id = int(number)
        if not CampaignMembership.objects.filter(
            campaign_id=campaign_id, rater_id=rater_id
        ).exists():
            return None
        tone = "good" if kind == GOOD_EXAMPLES_SCOPE else "bad"
        examples = Candidate.objects.filter(**{f"{tone}_example_in_campaigns": campaign_id})
        examples = examples.order_by("pk")
        return next(iter(examples.values_list(*fields)[position : position + 1]), None)
    return None


def rater_media_key(*, rater_id: int, scope: str, position: int, part: str) -> str | None:
    """The storage key behind a rater's media URL (``part``: file, source, frame-<n>), or None
    when the rater may not see it (the rule: ``_rater_candidate_files``)."""
    row = _rater_candidate_files(rater_id=rater_id, scope=scope, position=position)
    return _part_key(*row, part) if row else None


def rater_media_frames(*, rater_id: int, scope: str, position: int) -> tuple[str, int] | None:
    """(frames_prefix, frame_count) of the animation behind a rater's strip URL, or None when
    the rater may not see it or it has no stored frames. The same rule as every other file of
    the candidate (``_rater_candidate_files``)."""
    row = _rater_candidate_files(rater_id=rater_id, scope=scope, position=position)
    if not row or not row[1]:
        return None
    return row[1], row[2]


def _json(value):
    # SQLite hands JSON columns back as text from a raw query.
    return json.loads(value) if isinstance(value, str) else value


def item_payloads(
    *, item_ids: list[int], rater_id: int, rater_prompt: str, rows: list[dict] | None = None
) -> list[dict]:
    """What the rating screen shows of each item to ``rater_id``, in the order of ``item_ids``.

    ``rater_prompt``: the campaign's choice of prompt (``Campaign.rater_prompt``).
    ``rows``: the payload rows when the rating step read them already; otherwise one query.
    Candidate ids, storage keys and model versions are left out on purpose: raters must not
    know which model (or teacher) made a candidate (see ``_candidate_payload``).
    """
    if not item_ids:
        return []
    if rows is None:
        rows = assignment.payload_rows(item_ids)
    by_item: dict[int, list[dict]] = {}
    tokens: dict[int, str] = {}
    for row in rows:
        item_id = row["item_id"]
        token = tokens.get(item_id)
        if token is None:
            token = tokens[item_id] = item_media_token(item_id=item_id, rater_id=rater_id)
        by_item.setdefault(item_id, []).append(_candidate_payload(row, token, rater_prompt))
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


def item_loads(campaign_id: int, *, limit: int = 100) -> QuerySet[ItemLoad]:
    """The campaign's item loads, newest first."""
    return ItemLoad.objects.filter(campaign_id=campaign_id).order_by("-created_at", "-id")[:limit]


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


def _items_progress(campaign_ids: list[int]) -> dict[int, dict]:
    """Per campaign: its items (gold left out), those done (judgments up to their overlap
    target) and those started. The one definition of "done" that every progress figure uses."""
    return {
        row.pop("campaign_id"): row
        for row in Item.objects.filter(campaign_id__in=campaign_ids, is_gold=False)
        .values("campaign_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(judgment_count__gte=F("overlap_target"))),
            started=Count("id", filter=Q(judgment_count__gt=0)),
        )
        .order_by()
    }


def campaigns_all_done() -> list[Campaign]:
    """Running campaigns whose every item (gold left out) has all its judgments: ready to be
    closed or turned into a dataset version. Two queries."""
    campaigns = list(
        Campaign.objects.filter(status=CampaignStatus.RUNNING).order_by("-started_at", "-id")
    )
    items = _items_progress([c.pk for c in campaigns])
    return [
        c
        for c in campaigns
        if (p := items.get(c.pk)) is not None and p["total"] and p["done"] == p["total"]
    ]


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def campaign_progress(*, campaign: Campaign, active_minutes: int = 15) -> dict:
    """Items done, judgments, skips and active raters (judged in the last ``active_minutes``)."""
    return campaigns_progress(campaigns=[campaign], active_minutes=active_minutes)[campaign.pk]


def campaigns_progress(
    *, campaigns: Sequence[Campaign], active_minutes: int = 15
) -> dict[int, dict]:
    """``campaign_progress`` of each campaign, by campaign id: four queries for any number of
    campaigns (a list page asking campaign by campaign paid four per row)."""
    ids = [c.pk for c in campaigns]
    items = _items_progress(ids)
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
            "percent_done": _percent(item["done"], total),
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
    """The campaigns open to the rater (running or paused) with their own progress today and
    the items left for them (``items_left_for_rater``, as the rating screen counts them); four
    queries whatever the number of campaigns."""
    now = timezone.now()
    today = _day_start(now)
    memberships = list(
        CampaignMembership.objects.filter(
            rater=rater, campaign__status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]
        )
        .select_related("campaign")
        .order_by("-campaign__started_at", "campaign_id")
    )
    if not memberships:
        return []
    left = items_left_for_rater(
        rater_id=rater.pk, campaign_ids=[m.campaign_id for m in memberships], now=now
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
            **left[m.campaign_id],
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


def lease_counts(*, now: datetime) -> dict[str, int]:
    """Leases still counted on their items: ``active`` ones and ``expired`` ones that the sweep
    (``lease_expire_sweep``) has not given back yet; one query, along the live-lease index."""
    return Lease.objects.filter(released=False).aggregate(
        active=Count("id", filter=Q(expires_at__gte=now)),
        expired=Count("id", filter=Q(expires_at__lt=now)),
    )


def judgment_counts_since(*, since: datetime) -> dict[str, int]:
    """Judgments stored at or after ``since``: ``judged`` and ``skipped``. Two queries whose cost
    grows with the recent judgments only, not with the table.

    No index leads with ``created_at`` (one more index to write on every judgment). Judgments are
    stored in id order, so the newest older one is found by walking the primary key backwards
    from the end, through the recent ones only, and the recent ones are those after it. Measured
    on a table of 1,000,000 rows shaped like this one: 0.1 ms for both queries, against 114 ms
    for a count filtered on ``created_at``, which reads the whole table.
    """
    boundary = (
        Judgment.objects.filter(created_at__lt=since)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    recent = Judgment.objects.filter(created_at__gte=since)
    if boundary is not None:
        recent = recent.filter(id__gt=boundary)
    counts = dict(recent.order_by().values_list("skipped").annotate(n=Count("id")))
    return {"judged": counts.get(False, 0), "skipped": counts.get(True, 0)}


# Items left for a rater are counted up to this many: the count walks the campaign's open items
# and probes the rater's leases and judgments for each, so its cost grows with what it counts.
# Past it the screen says "1000+", which is as useful to a rater as the exact figure.
LEFT_FOR_RATER_CAP = 1000


class _RowCount(Subquery):
    """How many rows a (correlated) queryset gives; a sliced one stops counting at its slice."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def items_left_for_rater(
    *, rater_id: int, campaign_ids: Sequence[int], now: datetime
) -> dict[int, dict]:
    """Per campaign, the items the rater can still be given: ``left``, the ones they hold
    leases on plus the open items they have never seen (gold checks, mixed in at the
    campaign's gold rate, are not counted), counted up to ``LEFT_FOR_RATER_CAP``
    (``left_capped`` then says there are more). Two queries, whatever the number of campaigns;
    each campaign's count stops at the cap."""
    held = dict(
        Lease.objects.filter(
            campaign_id__in=campaign_ids, rater_id=rater_id, released=False, expires_at__gt=now
        )
        .order_by()
        .values_list("campaign_id")
        .annotate(n=Count("id"))
    )
    never_seen = (
        Item.objects.filter(campaign_id=OuterRef("pk"), is_open=True)
        .exclude(Exists(Lease.objects.filter(item_id=OuterRef("pk"), rater_id=rater_id)))
        .exclude(Exists(Judgment.objects.filter(item_id=OuterRef("pk"), rater_id=rater_id)))
        .order_by()
        .values("id")[: LEFT_FOR_RATER_CAP + 1]
    )
    unseen = dict(
        Campaign.objects.filter(pk__in=campaign_ids)
        .annotate(unseen=_RowCount(never_seen))
        .values_list("pk", "unseen")
    )
    left = {pk: held.get(pk, 0) + unseen.get(pk, 0) for pk in campaign_ids}
    return {
        pk: {"left": min(n, LEFT_FOR_RATER_CAP), "left_capped": n > LEFT_FOR_RATER_CAP}
        for pk, n in left.items()
    }


def rater_progress(*, campaign_id: int, rater_id: int) -> dict:
    """The rating screen's counters for one rater in one campaign, four queries.

    ``judged_today`` and ``judged_total``: the rater's judgments here, skips left out (those are
    ``skipped_total``), "today" in the site's time zone as on the rater's home page.
    ``left`` and ``left_capped``: ``items_left_for_rater``.
    ``campaign``: its items and those done, as on the campaign page.
    """
    now = timezone.now()
    judged = Judgment.objects.filter(campaign_id=campaign_id, rater_id=rater_id).aggregate(
        judged_total=Count("id", filter=Q(skipped=False)),
        judged_today=Count("id", filter=Q(skipped=False, created_at__gte=_day_start(now))),
        skipped_total=Count("id", filter=Q(skipped=True)),
    )
    left = items_left_for_rater(rater_id=rater_id, campaign_ids=[campaign_id], now=now)
    items = _items_progress([campaign_id]).get(campaign_id, {"total": 0, "done": 0})
    return {
        **judged,
        **left[campaign_id],
        "campaign": {
            "items": items["total"],
            "items_done": items["done"],
            "percent_done": _percent(items["done"], items["total"]),
        },
    }
