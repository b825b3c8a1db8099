"""Campaigns: create, edit, start, pause and close."""

from collections.abc import Iterable, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignMembership,
    CampaignStatus,
    Item,
    Lease,
    Preset,
    RaterPrompt,
)
from annotation.schema import (
    PRESETS,
    normalise_schema,
    preset_for_kind,
    preset_questions,
    presets_questions,
)
from annotation.selectors import campaign_config_forget
from generation.models import Candidate
from stickerloop import events
from stickerloop.errors import ServiceConflict
from stickerloop.roles import Role, has_role


def _check_settings(
    *, overlap, max_overlap, lease_seconds, gold_rate, rater_prompt
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if rater_prompt not in RaterPrompt.values:
        errors["rater_prompt"] = [
            f"Unknown choice {rater_prompt!r}; use one of {', '.join(RaterPrompt.values)}."
        ]
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


def _resolve_schema(
    *, kind: str, preset: str | None, question_schema, presets: Sequence[str] | None = None
) -> tuple[str, list[str], list[dict]]:
    """The campaign's preset, the presets its questions came from, and its normalised schema.

    ``presets`` (several ticked on the campaign page) combines their questions
    (``schema.presets_questions``); a combination is stored as the ``custom`` preset, since no
    one preset asks its questions, with the names in ``presets``. Otherwise ``preset`` or a
    hand-written ``question_schema`` decides, as before: a preset's campaign has ``presets ==
    [preset]``, a custom one ``[]``.
    """
    if kind not in CampaignKind.values:
        raise ValidationError(
            {"kind": [f"Unknown kind {kind!r}; use one of {', '.join(CampaignKind.values)}."]}
        )
    if presets is not None:
        if preset is not None:
            raise ValidationError({"preset": ["Give preset or presets, not both."]})
        if question_schema is not None:
            raise ValidationError(
                {"question_schema": ["Tick presets or write your own questions, not both."]}
            )
        presets = list(presets)
        schema = presets_questions(presets, kind=kind)
        return (presets[0] if len(presets) == 1 else Preset.CUSTOM), presets, schema
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
        return preset, [preset], preset_questions(preset)
    return preset, [], normalise_schema(question_schema, kind=kind)


def raters_check(raters: Iterable[AbstractBaseUser]) -> list[str]:
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
    presets: Sequence[str] | None = None,
    question_schema: list | None = None,
    guidelines: str = "",
    overlap: int = 1,
    max_overlap: int | None = None,
    lease_seconds: int = 600,
    gold_rate: float = 0.0,
    rater_prompt: str = RaterPrompt.RAW,
    raters: Sequence[AbstractBaseUser] = (),
    created_by: AbstractBaseUser | None = None,
    good_examples: Sequence[Candidate] = (),
    bad_examples: Sequence[Candidate] = (),
) -> Campaign:
    """Create a draft campaign from a preset (default: the kind's preset), several presets'
    questions combined (``presets``), or a custom schema.

    ``rater_prompt``: whether raters see each candidate's raw prompt (the default: alignment is
    judged against what was asked for) or its enhanced prompt.
    """
    max_overlap = overlap if max_overlap is None else max_overlap
    errors = _check_settings(
        overlap=overlap,
        max_overlap=max_overlap,
        lease_seconds=lease_seconds,
        gold_rate=gold_rate,
        rater_prompt=rater_prompt,
    )
    try:
        preset, presets, schema = _resolve_schema(
            kind=kind, preset=preset, presets=presets, question_schema=question_schema
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if not name or not name.strip():
        errors["name"] = ["A campaign needs a name."]
    elif Campaign.objects.filter(name=name.strip()).exists():
        errors["name"] = [f"A campaign named {name.strip()!r} exists already."]
    if problems := raters_check(raters):
        errors["raters"] = problems
    if errors:
        raise ValidationError(errors)
    campaign = Campaign(
        name=name.strip(),
        kind=kind,
        preset=preset,
        presets=presets,
        question_schema=schema,
        guidelines=guidelines,
        overlap=overlap,
        max_overlap=max_overlap,
        lease_seconds=lease_seconds,
        gold_rate=float(gold_rate),
        rater_prompt=rater_prompt,
        created_by=created_by,
    )
    campaign.full_clean(validate_unique=False)
    try:
        # A savepoint: the same form sent twice at once (a double click) inserts one campaign;
        # the second waits on the name's unique index, then is refused here like any taken name.
        with transaction.atomic():
            campaign.save()
    except IntegrityError as exc:
        raise ValidationError(
            {"name": [f"A campaign named {campaign.name!r} exists already."]}
        ) from exc
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
    the questions, overlap, lease length and the prompt raters see are what the collected
    judgments mean."""
    campaign = campaign_lock(campaign)
    allowed = {
        "name",
        "preset",
        "presets",
        "question_schema",
        "guidelines",
        "overlap",
        "max_overlap",
        "lease_seconds",
        "gold_rate",
        "rater_prompt",
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
        "rater_prompt": changes.get("rater_prompt", campaign.rater_prompt),
    }
    if "overlap" in changes and "max_overlap" not in changes:
        values["max_overlap"] = max(values["overlap"], campaign.max_overlap)
    errors = _check_settings(**values)
    if "presets" in changes:
        try:
            campaign.preset, campaign.presets, campaign.question_schema = _resolve_schema(
                kind=campaign.kind,
                preset=changes.get("preset"),
                presets=changes["presets"],
                question_schema=changes.get("question_schema"),
            )
        except ValidationError as exc:
            errors.update(exc.message_dict)
    elif "question_schema" in changes or "preset" in changes:
        try:
            campaign.preset, campaign.presets, campaign.question_schema = _resolve_schema(
                kind=campaign.kind,
                preset=changes.get(
                    "preset", Preset.CUSTOM if "question_schema" in changes else campaign.preset
                ),
                question_schema=changes.get("question_schema"),
            )
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


def campaign_lock(campaign: Campaign) -> Campaign:
    """Lock the campaign row against the other writers of the campaign (status changes, edits,
    new items) until the transaction ends.

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: every judgment and lease of the campaign checks
    its foreign key to this row at commit with a ``FOR KEY SHARE`` lock, which ``FOR UPDATE``
    would make wait: every rater of a running campaign waited until new items committed (41.4 s
    for 1,000,000 items in ``bench/campaign_items.py``). The campaign's id never changes, so the
    weaker lock is enough.
    """
    return Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)


@transaction.atomic
def campaign_start(*, campaign: Campaign) -> Campaign:
    """Open a draft (or paused) campaign to its raters."""
    campaign = campaign_lock(campaign)
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
    campaign = campaign_lock(campaign)
    if campaign.status != CampaignStatus.RUNNING:
        raise ServiceConflict(f"Campaign {campaign.name!r} is {campaign.status}, not running.")
    campaign.status = CampaignStatus.PAUSED
    campaign.save(update_fields=["status"])
    return campaign


@transaction.atomic
def campaign_close(*, campaign: Campaign) -> Campaign:
    """Close for good: live leases are released and further submits answer 409."""
    campaign = campaign_lock(campaign)
    if campaign.status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed already.")
    campaign.status = CampaignStatus.CLOSED
    campaign.closed_at = timezone.now()
    campaign.save(update_fields=["status", "closed_at"])
    Lease.objects.filter(campaign=campaign, released=False).update(released=True)
    Item.objects.filter(campaign=campaign, leased_count__gt=0).update(leased_count=0)
    # Closing is a campaign's one terminal state: no judgment is added after it.
    events.publish(events.CAMPAIGN_COMPLETED, object_type="campaign", object_id=campaign.pk)
    return campaign
