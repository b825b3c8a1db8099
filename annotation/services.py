"""Annotation writes: campaigns, memberships, items, leases and judgments."""

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation import assignment
from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignMembership,
    CampaignStatus,
    Item,
    ItemCandidate,
    Judgment,
    Lease,
    MembershipStatus,
    Preset,
    Side,
)
from annotation.schema import PRESETS, normalise_schema, preset_for_kind, preset_questions
from annotation.selectors import CampaignConfig, campaign_config, campaign_config_forget
from generation.models import Candidate, CandidateKind
from stickerloop.api import ServiceConflict
from stickerloop.roles import Role, has_role

GROUP_SIZES = {
    CampaignKind.SINGLE: (1, 1),
    CampaignKind.PAIR: (2, 2),
    CampaignKind.BEST_OF_N: (2, 8),
    CampaignKind.SET: (2, 12),
}
MAX_SKIP_REASON = 200
MAX_SECONDS_ON_ITEM = 86400.0


def max_held_leases() -> int:
    """Leases one rater may hold in a campaign: the current item plus the prefetched ones."""
    return settings.ANNOTATION_MAX_HELD_LEASES


def undo_window() -> timedelta:
    return timedelta(seconds=settings.ANNOTATION_UNDO_SECONDS)


# Campaigns ---------------------------------------------------------------------------------------


def _check_settings(*, overlap, max_overlap, lease_seconds, gold_rate) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= 50:
        errors["overlap"] = [f"Must be an integer from 1 to 50, not {overlap!r}."]
    elif (
        isinstance(max_overlap, bool)
        or not isinstance(max_overlap, int)
        or not (overlap <= max_overlap <= 50)
    ):
        errors["max_overlap"] = [
            f"Must be an integer from overlap ({overlap}) to 50, not {max_overlap!r}."
        ]
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, int)
        or not (10 <= lease_seconds <= 86400)
    ):
        errors["lease_seconds"] = [f"Must be an integer from 10 to 86400, not {lease_seconds!r}."]
    if (
        isinstance(gold_rate, bool)
        or not isinstance(gold_rate, int | float)
        or not (0.0 <= gold_rate <= 1.0)
    ):
        errors["gold_rate"] = [f"Must be a number from 0 to 1, not {gold_rate!r}."]
    return errors


def _resolve_schema(*, kind: str, preset: str | None, question_schema) -> tuple[str, list[dict]]:
    if kind not in CampaignKind.values:
        raise ValidationError(
            {"kind": [f"Unknown kind {kind!r}; use one of {', '.join(CampaignKind.values)}."]}
        )
    if preset is None:
        preset = Preset.CUSTOM if question_schema is not None else preset_for_kind(kind)
    if preset not in Preset.values:
        raise ValidationError(
            {"preset": [f"Unknown preset {preset!r}; use one of {', '.join(Preset.values)}."]}
        )
    if preset != Preset.CUSTOM and kind not in PRESETS[preset]["kinds"]:
        raise ValidationError(
            {
                "preset": [
                    f"The {preset} preset is for {', '.join(PRESETS[preset]['kinds'])} "
                    f"campaigns, not {kind}."
                ]
            }
        )
    if question_schema is None:
        if preset == Preset.CUSTOM:
            raise ValidationError({"question_schema": ["A custom campaign needs questions."]})
        return preset, preset_questions(preset)
    return preset, normalise_schema(question_schema, kind=kind)


def _check_raters(raters: Iterable[AbstractBaseUser]) -> list[str]:
    not_raters = [u.get_username() for u in raters if not has_role(u, Role.RATER)]
    if not_raters:
        return [f"User(s) {', '.join(not_raters)} do not hold the rater role."]
    return []


@transaction.atomic
def campaign_create(
    *,
    name: str,
    kind: str,
    preset: str | None = None,
    question_schema: list | None = None,
    guidelines: str = "",
    overlap: int = 1,
    max_overlap: int | None = None,
    lease_seconds: int = 600,
    gold_rate: float = 0.0,
    raters: Sequence[AbstractBaseUser] = (),
    created_by: AbstractBaseUser | None = None,
    good_examples: Sequence[Candidate] = (),
    bad_examples: Sequence[Candidate] = (),
) -> Campaign:
    """Create a draft campaign from a preset (default: the kind's preset) or a custom schema."""
    max_overlap = overlap if max_overlap is None else max_overlap
    errors = _check_settings(
        overlap=overlap, max_overlap=max_overlap, lease_seconds=lease_seconds, gold_rate=gold_rate
    )
    try:
        preset, schema = _resolve_schema(kind=kind, preset=preset, question_schema=question_schema)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if not name or not name.strip():
        errors["name"] = ["A campaign needs a name."]
    elif Campaign.objects.filter(name=name.strip()).exists():
        errors["name"] = [f"A campaign named {name.strip()!r} exists already."]
    if problems := _check_raters(raters):
        errors["raters"] = problems
    if errors:
        raise ValidationError(errors)
    campaign = Campaign(
        name=name.strip(),
        kind=kind,
        preset=preset,
        question_schema=schema,
        guidelines=guidelines,
        overlap=overlap,
        max_overlap=max_overlap,
        lease_seconds=lease_seconds,
        gold_rate=float(gold_rate),
        created_by=created_by,
    )
    campaign.full_clean()
    campaign.save()
    campaign.good_examples.set(good_examples)
    campaign.bad_examples.set(bad_examples)
    CampaignMembership.objects.bulk_create(
        [CampaignMembership(campaign=campaign, rater=r) for r in raters], ignore_conflicts=True
    )
    return campaign


EDITABLE_WHILE_RUNNING = {"guidelines", "good_examples", "bad_examples"}


@transaction.atomic
def campaign_update(*, campaign: Campaign, **changes) -> Campaign:
    """Change a draft campaign. Once started only the guidelines and examples may change:
    the questions, overlap and lease length are what the collected judgments mean."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    allowed = {
        "name",
        "preset",
        "question_schema",
        "guidelines",
        "overlap",
        "max_overlap",
        "lease_seconds",
        "gold_rate",
        "good_examples",
        "bad_examples",
    }
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationError({f: ["This field cannot be changed."] for f in unknown})
    if campaign.status != CampaignStatus.DRAFT:
        frozen = sorted(set(changes) - EDITABLE_WHILE_RUNNING)
        if frozen:
            raise ServiceConflict(
                f"Campaign {campaign.name!r} has started; {', '.join(frozen)} can no longer change."
            )
    values = {
        "overlap": changes.get("overlap", campaign.overlap),
        "max_overlap": changes.get("max_overlap", campaign.max_overlap),
        "lease_seconds": changes.get("lease_seconds", campaign.lease_seconds),
        "gold_rate": changes.get("gold_rate", campaign.gold_rate),
    }
    if "overlap" in changes and "max_overlap" not in changes:
        values["max_overlap"] = max(values["overlap"], campaign.max_overlap)
    errors = _check_settings(**values)
    if "question_schema" in changes or "preset" in changes:
        try:
            preset, schema = _resolve_schema(
                kind=campaign.kind,
                preset=changes.get(
                    "preset", Preset.CUSTOM if "question_schema" in changes else campaign.preset
                ),
                question_schema=changes.get("question_schema"),
            )
            campaign.preset, campaign.question_schema = preset, schema
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name:
            errors["name"] = ["A campaign needs a name."]
        elif Campaign.objects.filter(name=name).exclude(pk=campaign.pk).exists():
            errors["name"] = [f"A campaign named {name!r} exists already."]
        campaign.name = name
    if errors:
        raise ValidationError(errors)
    for key, value in values.items():
        setattr(campaign, key, float(value) if key == "gold_rate" else value)
    if "guidelines" in changes:
        campaign.guidelines = changes["guidelines"]
    campaign.full_clean()
    campaign.save()
    if "overlap" in changes:
        # A draft's items start over at the new overlap (nothing is judged before the start).
        campaign.items.filter(is_gold=False).update(overlap_target=campaign.overlap)
    if "good_examples" in changes:
        campaign.good_examples.set(changes["good_examples"])
    if "bad_examples" in changes:
        campaign.bad_examples.set(changes["bad_examples"])
    return campaign


def _locked_campaign(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


@transaction.atomic
def campaign_start(*, campaign: Campaign) -> Campaign:
    """Open a draft (or paused) campaign to its raters."""
    campaign = _locked_campaign(campaign)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
        raise ServiceConflict(f"Campaign {campaign.name!r} is {campaign.status}; it cannot start.")
    if not campaign.items.filter(is_gold=False).exists():
        raise ServiceConflict(f"Campaign {campaign.name!r} has no items yet.")
    campaign.status = CampaignStatus.RUNNING
    campaign.started_at = campaign.started_at or timezone.now()
    campaign.save(update_fields=["status", "started_at"])
    transaction.on_commit(lambda: campaign_config_forget(campaign.pk))
    return campaign


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """Stop handing out items. Raters may still submit the items they hold."""
    campaign = _locked_campaign(campaign)
    if campaign.status != CampaignStatus.RUNNING:
        raise ServiceConflict(f"Campaign {campaign.name!r} is {campaign.status}, not running.")
    campaign.status = CampaignStatus.PAUSED
    campaign.save(update_fields=["status"])
    return campaign


@transaction.atomic
def campaign_close(*, campaign: Campaign) -> Campaign:
    """Close for good: live leases are released and further submits answer 409."""
    campaign = _locked_campaign(campaign)
    if campaign.status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed already.")
    campaign.status = CampaignStatus.CLOSED
    campaign.closed_at = timezone.now()
    campaign.save(update_fields=["status", "closed_at"])
    Lease.objects.filter(campaign=campaign, released=False).update(released=True)
    Item.objects.filter(campaign=campaign, leased_count__gt=0).update(leased_count=0)
    return campaign


@transaction.atomic
def campaign_membership_set(
    *,
    campaign: Campaign,
    rater: AbstractBaseUser,
    status: str = MembershipStatus.ACTIVE,
    reason: str = "",
) -> CampaignMembership:
    """Add a rater to a campaign, or pause or resume them.

    Pausing releases the rater's live leases, so their items go back to the pool at once; a
    paused rater is refused new items (403 with the reason) and cannot submit.
    """
    if status not in MembershipStatus.values:
        raise ValidationError({"status": [f"Unknown status {status!r}; use active or paused."]})
    if problems := _check_raters([rater]):
        raise ValidationError({"rater": problems})
    if len(reason) > 500:
        raise ValidationError({"reason": ["At most 500 characters."]})
    membership, created = CampaignMembership.objects.get_or_create(campaign=campaign, rater=rater)
    if created and status == MembershipStatus.ACTIVE:
        # A new membership starts active; the gate may pause it for a missing qualification.
        _qualification_gate(campaign, [rater.pk])
        return CampaignMembership.objects.get(pk=membership.pk)
    membership = CampaignMembership.objects.select_for_update().get(pk=membership.pk)
    if status == MembershipStatus.PAUSED:
        membership.status = status
        membership.paused_reason = reason
        membership.paused_at = timezone.now()
        _leases_release(Lease.objects.filter(campaign=campaign, rater=rater, released=False))
    else:
        membership.status = status
        membership.paused_reason = ""
        membership.paused_at = None
    membership.save(update_fields=["status", "paused_reason", "paused_at"])
    return membership


def _qualification_gate(campaign: Campaign, rater_ids: list[int]) -> None:
    """Pause new members who have not passed the campaign's qualification campaign, in the
    caller's transaction, so no item is leased to them before the gate has looked."""
    from annotation.quality.services import qualification_gate_apply

    qualification_gate_apply(campaign=campaign, rater_ids=rater_ids)


@transaction.atomic
def campaign_raters_add(*, campaign: Campaign, raters: Sequence[AbstractBaseUser]) -> int:
    """Add active memberships for ``raters`` (existing ones are left as they are); a campaign
    that requires a qualification pauses the new members who have not passed it."""
    if problems := _check_raters(raters):
        raise ValidationError({"raters": problems})
    new_ids = {r.pk for r in raters} - set(
        CampaignMembership.objects.filter(campaign=campaign).values_list("rater_id", flat=True)
    )
    CampaignMembership.objects.bulk_create(
        [CampaignMembership(campaign=campaign, rater=r) for r in raters], ignore_conflicts=True
    )
    if new_ids:
        _qualification_gate(campaign, sorted(new_ids))
    return len(new_ids)


# Items -------------------------------------------------------------------------------------------


def _group_errors(kind: str, index: int, group: Sequence[Candidate]) -> list[str]:
    low, high = GROUP_SIZES[kind]
    where = f"Group {index + 1}"
    if not low <= len(group) <= high:
        size = f"{low}" if low == high else f"{low} to {high}"
        return [f"{where}: a {kind} item shows {size} candidate(s), not {len(group)}."]
    if len({c.pk for c in group}) != len(group):
        return [f"{where}: a candidate appears twice."]
    if kind == CampaignKind.BEST_OF_N:
        if any(c.kind != CandidateKind.ANIMATION for c in group):
            return [f"{where}: best-of-N items show animations."]
        if len({c.source_id for c in group}) != 1:
            return [f"{where}: best-of-N animations must come from one source sticker."]
    if kind == CampaignKind.SET and len({c.prompt_id or c.raw_prompt for c in group}) != 1:
        return [f"{where}: a set shows candidates of one prompt."]
    return []


def _group_key(kind: str, group: Sequence[Candidate]) -> str:
    first = group[0]
    if kind == CampaignKind.PAIR:
        return f"prompt={first.prompt_id} source={first.source_id} seed={first.seed}"
    if kind == CampaignKind.BEST_OF_N:
        return f"source={first.source_id} seed={first.seed}"
    if kind == CampaignKind.SET:
        return f"prompt={first.prompt_id} model={first.model_version_id}"
    return ""


@transaction.atomic
def campaign_items_add(
    *,
    campaign: Campaign,
    candidate_groups: list[list[Candidate]],
    seed: int | None = None,
    gold_answers: list[dict] | None = None,
) -> list[Item]:
    """One item per group; each group's display order is shuffled (seeded) and recorded.

    With ``gold_answers`` (one per group) the items are gold: their known answers are checked
    against the schema, they are served at the campaign's gold rate and consume no overlap.
    """
    from annotation.schema import validate_answers

    campaign = _locked_campaign(campaign)
    if campaign.status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed.")
    if not candidate_groups:
        raise ValidationError({"candidate_groups": ["Give at least one group of candidates."]})
    errors = [e for i, g in enumerate(candidate_groups) for e in _group_errors(campaign.kind, i, g)]
    if errors:
        raise ValidationError({"candidate_groups": errors[:20]})
    rng = random.Random(seed)
    orders = []
    for group in candidate_groups:
        order = list(group)
        rng.shuffle(order)
        orders.append(order)
    clean_gold: list[dict | None] = [None] * len(orders)
    if gold_answers is not None:
        if len(gold_answers) != len(orders):
            raise ValidationError(
                {
                    "gold_answers": [
                        f"Give one answer set per group: {len(orders)}, not {len(gold_answers)}."
                    ]
                }
            )
        for index, (answers, order) in enumerate(zip(gold_answers, orders, strict=True)):
            try:
                clean_gold[index] = validate_answers(
                    campaign.question_schema, answers, candidate_ids=[c.pk for c in order]
                )
            except ValidationError as exc:
                raise ValidationError(
                    {
                        f"gold_answers.{index}.{k.removeprefix('answers.')}": v
                        for k, v in exc.message_dict.items()
                    }
                ) from exc
    items = Item.objects.bulk_create(
        [
            Item(
                campaign=campaign,
                is_gold=gold is not None,
                gold_answers=gold,
                overlap_target=campaign.overlap,
                group_key=_group_key(campaign.kind, order),
            )
            for order, gold in zip(orders, clean_gold, strict=True)
        ]
    )
    ItemCandidate.objects.bulk_create(
        [
            ItemCandidate(
                item=item,
                candidate=candidate,
                position=position,
                side=(Side.LEFT if position == 0 else Side.RIGHT)
                if campaign.kind == CampaignKind.PAIR
                else Side.ONLY,
            )
            for item, order in zip(items, orders, strict=True)
            for position, candidate in enumerate(order)
        ]
    )
    return items


@dataclass
class Selection:
    batches: list[int] = field(default_factory=list)
    model_versions: list[int] = field(default_factory=list)
    prompt_tags: list[str] = field(default_factory=list)
    candidate_kind: str | None = None


def _selected_candidates(selection: Selection) -> list[Candidate]:
    qs = Candidate.objects.all()
    if selection.batches:
        qs = qs.filter(batch_id__in=selection.batches)
    if selection.model_versions:
        qs = qs.filter(model_version_id__in=selection.model_versions)
    if selection.prompt_tags:
        qs = qs.filter(prompt__tags__name__in=selection.prompt_tags).distinct()
    if selection.candidate_kind:
        qs = qs.filter(kind=selection.candidate_kind)
    return list(qs.order_by("id"))


def _groups_for(
    kind: str, candidates: list[Candidate], selection: Selection, group_size: int | None
) -> tuple[list[list[Candidate]], list[str]]:
    """Group selected candidates into items; the second value lists what could not be grouped."""
    if kind == CampaignKind.SINGLE:
        return [[c] for c in candidates], []
    if kind == CampaignKind.PAIR:
        versions = sorted({c.model_version_id for c in candidates if c.model_version_id})
        if len(versions) != 2:
            return [], [
                f"A pair campaign compares two model versions; the selection holds {len(versions)}."
            ]
        by_key: dict[tuple, dict[int, Candidate]] = defaultdict(dict)
        for c in candidates:
            by_key[(c.prompt_id, c.source_id, c.seed)].setdefault(c.model_version_id, c)
        groups, unpaired = [], 0
        for key in sorted(by_key, key=lambda k: tuple(-1 if v is None else v for v in k)):
            pair = by_key[key]
            if len(pair) == 2:
                groups.append([pair[versions[0]], pair[versions[1]]])
            else:
                unpaired += 1
        notes = (
            [f"{unpaired} candidate(s) had no counterpart with the same prompt and seed."]
            if unpaired
            else []
        )
        return groups, notes
    if kind == CampaignKind.BEST_OF_N:
        by_source: dict[tuple, dict[int, Candidate]] = defaultdict(dict)
        for c in candidates:
            if c.kind == CandidateKind.ANIMATION and c.source_id:
                by_source[(c.source_id, c.seed)].setdefault(c.model_version_id, c)
        groups = [
            list(v.values())[: GROUP_SIZES[kind][1]]
            for _, v in sorted(by_source.items())
            if len(v) >= 2
        ]
        return groups, []
    size = group_size or GROUP_SIZES[kind][1]
    by_prompt: dict[tuple, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_prompt[(c.prompt_id or 0, c.model_version_id or 0)].append(c)
    groups = []
    for _, members in sorted(by_prompt.items()):
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            if len(chunk) >= 2:
                groups.append(chunk)
    return groups, []


@transaction.atomic
def campaign_items_from_selection(
    *,
    campaign: Campaign,
    batches: Sequence[int] = (),
    model_versions: Sequence[int] = (),
    prompt_tags: Sequence[str] = (),
    candidate_kind: str | None = None,
    group_size: int | None = None,
    seed: int | None = None,
) -> list[Item]:
    """Build items from a candidate selection (batches, model versions, prompt tags, kind).

    Single: one item per candidate. Pair: the two selected model versions' candidates of the same
    prompt (or source sticker) and seed. Best-of-N: the animations of one source sticker and seed
    from different models. Set: up to ``group_size`` candidates of one prompt and model. Groups
    whose candidates are already in the campaign are left out, so adding a selection twice adds
    nothing the second time.
    """
    selection = Selection(
        batches=sorted(set(batches)),
        model_versions=sorted(set(model_versions)),
        prompt_tags=sorted(set(prompt_tags)),
        candidate_kind=candidate_kind,
    )
    if candidate_kind is not None and candidate_kind not in CandidateKind.values:
        raise ValidationError({"candidate_kind": [f"Unknown kind {candidate_kind!r}."]})
    if group_size is not None and not 2 <= group_size <= GROUP_SIZES[CampaignKind.SET][1]:
        raise ValidationError({"group_size": ["Must be from 2 to 12."]})
    if not (selection.batches or selection.model_versions or selection.prompt_tags):
        raise ValidationError({"selection": ["Choose batches, model versions or prompt tags."]})
    candidates = _selected_candidates(selection)
    if not candidates:
        raise ValidationError({"selection": ["The selection matches no candidates."]})
    groups, notes = _groups_for(campaign.kind, candidates, selection, group_size)
    present = set(
        ItemCandidate.objects.filter(item__campaign=campaign, item__is_gold=False).values_list(
            "candidate_id", flat=True
        )
    )
    groups = [g for g in groups if not any(c.pk in present for c in g)]
    if not groups:
        reason = " ".join(notes) or "Every candidate it groups is in the campaign already."
        raise ValidationError({"selection": [f"The selection makes no new items. {reason}"]})
    items = campaign_items_add(campaign=campaign, candidate_groups=groups, seed=seed)
    Campaign.objects.filter(pk=campaign.pk).update(
        selection={**selection.__dict__, "group_size": group_size, "seed": seed}
    )
    return items


@transaction.atomic
def item_overlap_target_set(*, item: Item, target: int) -> Item:
    """Raise (adaptive overlap) or lower an item's target within 1..campaign.max_overlap."""
    item = Item.objects.select_for_update().select_related("campaign").get(pk=item.pk)
    if not 1 <= target <= item.campaign.max_overlap:
        raise ValidationError(
            {
                "target": [
                    f"Must be from 1 to the campaign's max overlap "
                    f"({item.campaign.max_overlap}), not {target}."
                ]
            }
        )
    if target < item.judgment_count + item.leased_count:
        raise ServiceConflict(
            f"Item {item.pk} already has {item.judgment_count} judgment(s) and "
            f"{item.leased_count} lease(s); its target cannot drop to {target}."
        )
    item.overlap_target = target
    item.save(update_fields=["overlap_target"])
    item.refresh_from_db(fields=["is_open"])
    return item


# Leases ------------------------------------------------------------------------------------------


def _leases_release(leases) -> int:
    """Mark live leases released and give their slots back. Caller is inside a transaction."""
    rows = list(leases.select_for_update(skip_locked=True).values_list("pk", "item_id"))
    if not rows:
        return 0
    Lease.objects.filter(pk__in=[pk for pk, _ in rows]).update(released=True)
    per_item = Counter(item_id for _, item_id in rows)
    by_count: dict[int, list[int]] = defaultdict(list)
    for item_id, n in per_item.items():
        by_count[n].append(item_id)
    for n, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=sorted(item_ids), is_gold=False).update(
            leased_count=F("leased_count") - n
        )
    return len(rows)


_last_sweep: dict[int, float] = {}


@transaction.atomic
def lease_expire_sweep(*, campaign_id: int | None = None) -> int:
    """Release expired leases (all campaigns, or one); return how many.

    The row stays as the rater's "seen" marker: their slot returns to the pool for other raters,
    and a late submit is still accepted while the item has room.
    """
    leases = Lease.objects.filter(released=False, expires_at__lt=timezone.now())
    if campaign_id is not None:
        leases = leases.filter(campaign_id=campaign_id)
    return _leases_release(leases.order_by("item_id"))


def _maybe_sweep(campaign_id: int, *, force: bool = False) -> None:
    """Sweep a campaign's expired leases at most every ANNOTATION_LEASE_SWEEP_SECONDS per
    process (a query on the partial ``lease_live`` index); the Celery beat task sweeps too."""
    now = time.monotonic()
    interval = settings.ANNOTATION_LEASE_SWEEP_SECONDS
    if force or now - _last_sweep.get(campaign_id, 0.0) >= interval:
        _last_sweep[campaign_id] = now
        lease_expire_sweep(campaign_id=campaign_id)


# Rating: submit, next, undo ----------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """What the rater sends for one item (answers checked by ``submission_check``)."""

    item_id: int
    client_id: uuid.UUID
    seconds_on_item: float
    answers: dict = field(default_factory=dict)
    skipped: bool = False
    skip_reason: str = ""


@dataclass
class StepResult:
    judgment: Judgment | None = None
    replayed: bool = False
    item_ids: list[int] = field(default_factory=list)
    campaign_status: str = CampaignStatus.RUNNING
    member_status: str = MembershipStatus.ACTIVE
    paused_reason: str = ""
    # What the leased items show, when the step read it already (see ``item_payloads``).
    rows: list[dict] | None = None

    @property
    def message(self) -> str:
        """Why no new items come, when the campaign or the rater's membership is paused."""
        if self.member_status == MembershipStatus.PAUSED:
            return (
                f"Your work here is paused: {self.paused_reason}"
                if self.paused_reason
                else "Your work here is paused."
            )
        if self.campaign_status != CampaignStatus.RUNNING:
            return f"The campaign is {self.campaign_status}."
        return ""


def submission_check(config: CampaignConfig, submission: Submission) -> Submission:
    """Validate a submission against the campaign's schema; return it with clean answers."""
    from annotation.schema import validate_answers

    errors: dict[str, list[str]] = {}
    seconds = submission.seconds_on_item
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (0 <= seconds <= MAX_SECONDS_ON_ITEM)
    ):
        errors["seconds_on_item"] = [f"Must be a number from 0 to {MAX_SECONDS_ON_ITEM:.0f}."]
    if submission.skipped:
        reason = (submission.skip_reason or "").strip()
        if not reason:
            errors["skip_reason"] = ["Say why you skip."]
        elif len(reason) > MAX_SKIP_REASON:
            errors["skip_reason"] = [f"At most {MAX_SKIP_REASON} characters."]
        if submission.answers:
            errors["answers"] = ["A skip carries no answers."]
        if errors:
            raise ValidationError(errors)
        return Submission(
            item_id=submission.item_id,
            client_id=submission.client_id,
            seconds_on_item=float(seconds),
            skipped=True,
            skip_reason=reason,
        )
    if submission.skip_reason:
        errors["skip_reason"] = ["Only a skip has a reason."]
    candidate_ids = (
        list(
            ItemCandidate.objects.filter(item_id=submission.item_id, item__campaign_id=config.id)
            .order_by("position")
            .values_list("candidate_id", flat=True)
        )
        if config.needs_candidate_ids
        else []
    )
    try:
        answers = validate_answers(config.schema, submission.answers, candidate_ids=candidate_ids)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return Submission(
        item_id=submission.item_id,
        client_id=submission.client_id,
        seconds_on_item=float(seconds),
        answers=answers,
    )


def _replayed(rater_id: int, submission: Submission) -> Judgment | None:
    judgment = Judgment.objects.filter(rater_id=rater_id, client_id=submission.client_id).first()
    if judgment is not None and judgment.item_id != submission.item_id:
        raise ValidationError(
            {
                "client_id": [
                    f"This client id was used for item {judgment.item_id}, not "
                    f"{submission.item_id}."
                ]
            }
        )
    return judgment


def _paused_message(config: CampaignConfig, reason: str) -> str:
    text = f"Your work on campaign {config.name!r} is paused"
    return f"{text}: {reason}" if reason else f"{text}."


def _refuse_submit(
    *,
    config: CampaignConfig,
    rater_id: int,
    submission: Submission,
    member_status: str,
    paused_reason: str,
    campaign_status: str,
) -> Judgment:
    """Why a submit cannot be stored (no live lease, closed campaign, paused rater); a retry of
    a stored submit is answered with the stored judgment instead."""
    replay = _replayed(rater_id, submission)
    if replay is not None:
        return replay
    if campaign_status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {config.name!r} is closed; nothing was stored.")
    if member_status == MembershipStatus.PAUSED:
        raise PermissionDenied(_paused_message(config, paused_reason))
    if Judgment.objects.filter(item_id=submission.item_id, rater_id=rater_id).exists():
        raise ServiceConflict(f"You have already judged item {submission.item_id}.")
    raise PermissionDenied(f"You hold no lease on item {submission.item_id}.")


def _item_full(submission: Submission) -> ServiceConflict:
    return ServiceConflict(
        f"Your lease on item {submission.item_id} expired and the item has all its judgments "
        "now; nothing was stored."
    )


def _fetch_refusal(
    config: CampaignConfig, *, member_status: str, paused_reason: str, campaign_status: str
) -> Exception | None:
    """Why no items are handed out, or None when they are."""
    if member_status == MembershipStatus.PAUSED:
        return PermissionDenied(_paused_message(config, paused_reason))
    if campaign_status != CampaignStatus.RUNNING:
        return ServiceConflict(
            f"Campaign {config.name!r} is {campaign_status}; no items are handed out."
        )
    return None


def _gold_slots(config: CampaignConfig, fetch: int) -> int:
    """How many of ``fetch`` new items should be gold: each is, with the campaign's gold rate."""
    if not config.gold_rate:
        return 0
    return sum(1 for _ in range(fetch) if random.random() < config.gold_rate)


def _step_in_python(
    *,
    config: CampaignConfig,
    rater_id: int,
    submission: Submission | None,
    fetch: int,
    gold_slots: int,
) -> StepResult:
    """The step as single statements in one transaction (see ``annotation.assignment``)."""
    result = StepResult()
    with transaction.atomic():
        membership = assignment.membership_lock(campaign_id=config.id, rater_id=rater_id)
        if membership is None:
            raise PermissionDenied(f"You are not a rater of campaign {config.name!r}.")
        member_status, paused_reason, campaign_status, held = membership
        result.campaign_status = campaign_status
        result.member_status, result.paused_reason = member_status, paused_reason
        if submission is not None:
            lease = None
            if campaign_status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED) and (
                member_status == MembershipStatus.ACTIVE
            ):
                lease = assignment.lease_lock(
                    campaign_id=config.id, item_id=submission.item_id, rater_id=rater_id
                )
            if lease is None:
                result.judgment = _refuse_submit(
                    config=config,
                    rater_id=rater_id,
                    submission=submission,
                    member_status=member_status,
                    paused_reason=paused_reason,
                    campaign_status=campaign_status,
                )
                result.replayed = True
            else:
                released, is_gold, room = lease
                if released and not room and not submission.skipped:
                    raise _item_full(submission)
                now = timezone.now()
                judgment_id = assignment.judgment_store(
                    campaign_id=config.id,
                    item_id=submission.item_id,
                    rater_id=rater_id,
                    answers_json=json.dumps(submission.answers),
                    seconds_on_item=submission.seconds_on_item,
                    client_id=str(submission.client_id),
                    skipped=submission.skipped,
                    skip_reason=submission.skip_reason,
                    lease_released=released,
                    is_gold=is_gold,
                    now=now,
                )
                result.judgment = _judgment_row(config, rater_id, submission, judgment_id, now)
                held -= 0 if released else 1
        want = min(fetch, max_held_leases() - held)
        if want > 0 and not _fetch_refusal(
            config,
            member_status=member_status,
            paused_reason=paused_reason,
            campaign_status=campaign_status,
        ):
            result.item_ids = _lease_new(
                config=config, rater_id=rater_id, count=want, gold_slots=gold_slots
            )
    return result


def _judgment_row(config, rater_id, submission, judgment_id, created_at) -> Judgment:
    return Judgment(
        pk=judgment_id,
        item_id=submission.item_id,
        rater_id=rater_id,
        campaign_id=config.id,
        answers=submission.answers,
        seconds_on_item=submission.seconds_on_item,
        client_id=submission.client_id,
        skipped=submission.skipped,
        skip_reason=submission.skip_reason,
        excluded=False,
        created_at=created_at,
    )


def _lease_new(*, config: CampaignConfig, rater_id: int, count: int, gold_slots: int) -> list[int]:
    """Lease up to ``count`` new items. Assumes: in a transaction, membership locked, campaign
    running, membership active."""
    gold_ids: list[int] = []
    now = timezone.now()
    expires_at = now + timedelta(seconds=config.lease_seconds)
    for _ in range(min(gold_slots, count)):
        gold_id = assignment.gold_pick(campaign_id=config.id, rater_id=rater_id)
        if gold_id is None:
            break
        # Leased at once, so the next gold pick (same "never seen" test) passes it over.
        assignment.leases_grant(
            campaign_id=config.id,
            rater_id=rater_id,
            item_ids=[],
            gold_ids=[gold_id],
            expires_at=expires_at,
            now=now,
        )
        gold_ids.append(gold_id)
    item_ids = assignment.items_pick(
        campaign_id=config.id,
        rater_id=rater_id,
        count=count - len(gold_ids),
        top_level=config.max_overlap - 1,
    )
    assignment.leases_grant(
        campaign_id=config.id,
        rater_id=rater_id,
        item_ids=item_ids,
        gold_ids=[],
        expires_at=expires_at,
        now=now,
    )
    return [*gold_ids, *item_ids]


def _step_in_database(
    *,
    config: CampaignConfig,
    rater_id: int,
    submission: Submission | None,
    fetch: int,
    gold_slots: int,
) -> StepResult:
    """The step as one call of ``annotation_rate_step`` (PostgreSQL)."""
    args = {
        "campaign_id": config.id,
        "rater_id": rater_id,
        "item_id": None,
        "answers_json": None,
        "seconds_on_item": None,
        "client_id": None,
        "skipped": False,
        "skip_reason": "",
        "fetch": fetch,
        "max_held": max_held_leases(),
        "gold_slots": gold_slots,
    }
    if submission is not None:
        args.update(
            item_id=submission.item_id,
            answers_json=json.dumps(submission.answers),
            seconds_on_item=submission.seconds_on_item,
            client_id=str(submission.client_id),
            skipped=submission.skipped,
            skip_reason=submission.skip_reason,
        )
    try:
        if connection.in_atomic_block:
            # A failed call must not poison the caller's transaction: use a savepoint.
            with transaction.atomic():
                out = assignment.rate_step_in_database(**args)
        else:
            # Autocommit: the function call is its own transaction, one round trip.
            out = assignment.rate_step_in_database(**args)
    except IntegrityError:
        raise
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) == assignment.ITEM_FULL_SQLSTATE:
            raise _item_full(submission) from exc
        raise
    if out["refused"] == "not_member":
        raise PermissionDenied(f"You are not a rater of campaign {config.name!r}.")
    result = StepResult(
        campaign_status=out["campaign_status"],
        member_status=out["membership"],
        paused_reason=out["paused_reason"],
        item_ids=out.get("items") or [],
        rows=out["rows"],
    )
    if submission is not None:
        if out["refused"] == "full":
            raise _item_full(submission)
        if out["refused"] == "no_lease":
            result.judgment = _refuse_submit(
                config=config,
                rater_id=rater_id,
                submission=submission,
                member_status=out["membership"],
                paused_reason=out["paused_reason"],
                campaign_status=out["campaign_status"],
            )
            result.replayed = True
            if fetch:
                again = _step_in_database(
                    config=config,
                    rater_id=rater_id,
                    submission=None,
                    fetch=fetch,
                    gold_slots=gold_slots,
                )
                result.item_ids, result.rows = again.item_ids, again.rows
        else:
            result.judgment = _judgment_row(
                config,
                rater_id,
                submission,
                out["judgment_id"],
                datetime.fromisoformat(out["created_at"]),
            )
    return result


def rate_step_in_database() -> bool:
    return assignment.is_postgres() and settings.ANNOTATION_RATE_STEP_IN_DATABASE


def rating_step(
    *,
    campaign_id: int,
    rater: AbstractBaseUser,
    submission: Submission | None = None,
    fetch: int = 0,
) -> StepResult:
    """Submit one judgment (or skip) and lease up to ``fetch`` new items, in one transaction.

    The rating screen's request: submitting and refilling its prefetch buffer together. A retry
    of a stored submit (same client id) returns the stored judgment and stores nothing. Errors:
    ValidationError (400) for answers that do not fit, PermissionDenied (403) for a rater outside
    the campaign, a paused rater or an item without a lease, ServiceConflict (409) for a closed
    campaign or a late submit on an item that filled up. A submit is accepted while the campaign
    is paused; new items are not handed out then: without a submit that is a 409 (paused rater:
    403), with one the result's ``message`` says why.
    """
    config = campaign_config(campaign_id)
    if config is None:
        raise ValidationError({"campaign": [f"No campaign {campaign_id}."]})
    if submission is not None:
        submission = submission_check(config, submission)
    fetch = max(0, min(fetch, max_held_leases()))
    if fetch:
        _maybe_sweep(config.id)
    step = _step_in_database if rate_step_in_database() else _step_in_python
    kwargs = {
        "config": config,
        "rater_id": rater.pk,
        "submission": submission,
        "fetch": fetch,
        "gold_slots": _gold_slots(config, fetch),
    }
    try:
        result = step(**kwargs)
    except IntegrityError as exc:
        if submission is None:
            raise
        # The whole step rolled back: a concurrent retry of the same submit won the insert.
        replay = _replayed(rater.pk, submission)
        if replay is None:
            raise ServiceConflict(f"Item {submission.item_id} could not be stored: {exc}") from exc
        kwargs["submission"] = None
        result = step(**kwargs) if fetch else StepResult()
        result.judgment, result.replayed = replay, True
    if fetch and not result.item_ids:
        refusal = _fetch_refusal(
            config,
            member_status=result.member_status,
            paused_reason=result.paused_reason,
            campaign_status=result.campaign_status,
        )
        if refusal is not None and submission is None:
            raise refusal
        if refusal is None and lease_expire_sweep(campaign_id=config.id):
            # The queue looked empty: expired leases were holding the last open items.
            _last_sweep[config.id] = time.monotonic()
            kwargs["submission"] = None
            again = step(**kwargs)
            result.item_ids, result.rows = again.item_ids, again.rows
    return result


def item_next_for_rater(
    *, campaign: Campaign, rater: AbstractBaseUser, count: int = 1
) -> list[Item]:
    """Lease up to ``count`` items the rater has never seen (closest to completion first)."""
    ids = rating_step(campaign_id=campaign.pk, rater=rater, fetch=count).item_ids
    by_id = Item.objects.in_bulk(ids)
    return [by_id[i] for i in ids]


def judgment_submit(
    *,
    item: Item,
    rater: AbstractBaseUser,
    answers: dict,
    client_id: uuid.UUID,
    seconds_on_item: float,
) -> Judgment:
    """Store the rater's answers for an item they hold a lease on (idempotent on client id)."""
    submission = Submission(
        item_id=item.pk, client_id=client_id, seconds_on_item=seconds_on_item, answers=answers
    )
    return rating_step(campaign_id=item.campaign_id, rater=rater, submission=submission).judgment


def item_skip(
    *,
    item: Item,
    rater: AbstractBaseUser,
    reason: str,
    client_id: uuid.UUID,
    seconds_on_item: float = 0.0,
) -> Judgment:
    """Give an item back with a reason. The skip is stored (the rater is not shown the item
    again) and does not count towards the item's overlap."""
    submission = Submission(
        item_id=item.pk,
        client_id=client_id,
        seconds_on_item=seconds_on_item,
        skipped=True,
        skip_reason=reason,
    )
    return rating_step(campaign_id=item.campaign_id, rater=rater, submission=submission).judgment


@dataclass
class UndoResult:
    item_id: int
    answers: dict
    skipped: bool
    skip_reason: str


@transaction.atomic
def judgment_undo(*, campaign: Campaign, rater: AbstractBaseUser) -> UndoResult:
    """Take back the rater's last judgment in the campaign within the undo window.

    The judgment is deleted and the item leased to the rater again, so the screen can show it
    with the old answers filled in.
    """
    membership = assignment.membership_lock(campaign_id=campaign.pk, rater_id=rater.pk)
    if membership is None:
        raise PermissionDenied(f"You are not a rater of campaign {campaign.name!r}.")
    member_status, paused_reason, campaign_status, _ = membership
    if campaign_status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed; nothing can be undone.")
    if member_status == MembershipStatus.PAUSED:
        raise PermissionDenied(_paused_message(campaign_config(campaign.pk), paused_reason))
    last = (
        Judgment.objects.filter(campaign=campaign, rater=rater)
        .order_by("-created_at", "-id")
        .select_related("item")
        .first()
    )
    if last is None:
        raise ServiceConflict("You have no judgment to undo in this campaign.")
    if timezone.now() - last.created_at > undo_window():
        raise ServiceConflict(
            f"Your last judgment is older than {int(undo_window().total_seconds())} s; "
            "it can no longer be undone."
        )
    item = Item.objects.select_for_update().get(pk=last.item_id)
    if (
        not item.is_gold
        and last.skipped
        and item.judgment_count + item.leased_count >= item.overlap_target
    ):
        raise ServiceConflict(f"Item {item.pk} has all its judgments now; your skip stays.")
    result = UndoResult(
        item_id=item.pk, answers=last.answers, skipped=last.skipped, skip_reason=last.skip_reason
    )
    last.delete()
    now = timezone.now()
    Lease.objects.create(
        item=item,
        rater=rater,
        campaign=campaign,
        expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    Item.objects.filter(pk=item.pk).update(
        judgment_count=F("judgment_count") - (0 if last.skipped else 1),
        leased_count=F("leased_count") + (0 if item.is_gold else 1),
    )
    return result
