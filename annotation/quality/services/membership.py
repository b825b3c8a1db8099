"""Rater membership of a campaign: adding raters, pausing and resuming them, and the
qualification gate. The one owner of ``CampaignMembership.status``: every entry point (the
raters endpoint and page of a campaign, the quality endpoints and pages, automatic pauses and
the qualification check) comes through here, so the same rules hold everywhere and every pause
and resume writes a ``MembershipEvent``.

Rules: pausing needs a reason and releases the rater's live leases, so their items go back to
the pool at once; a pause may exclude the rater's judgments of their evaluation window (since
their last resume), and resuming restores what the pause excluded. Nobody resumes a rater who
has not passed the campaign's qualification. Every endpoint that calls these lets curators
only (admin holds every role); automatic pauses and the gate act with ``actor=None``.
"""

from collections.abc import Sequence
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Campaign, CampaignMembership, Item, Judgment, Lease, MembershipStatus
from annotation.quality import selectors
from annotation.quality.models import MembershipAction, MembershipEvent, PauseCause
from annotation.services.campaigns import raters_check
from annotation.services.leases import leases_release
from stickerloop import events
from stickerloop.errors import ServiceConflict

MAX_REASON = 500


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": [f"At most {MAX_REASON} characters."]})


def window_starts(campaign: Campaign) -> dict[int, datetime]:
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


def _judgments_mark(
    *, campaign_id: int, rater_id: int, since: datetime | None, excluded: bool
) -> tuple[int, list[int]]:
    """Set ``excluded`` on the rater's judgments in the campaign made from ``since`` (all when
    None) that do not have it yet. Returns how many changed and the sorted ids of the items
    whose counted (not skipped) judgments were among them."""
    judgments = Judgment.objects.filter(
        campaign_id=campaign_id, rater_id=rater_id, excluded=not excluded
    )
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    rows = list(judgments.values_list("id", "item_id", "skipped"))
    if not rows:
        return 0, []
    Judgment.objects.filter(pk__in=[r[0] for r in rows]).update(excluded=excluded)
    return len(rows), sorted(item_id for _, item_id, skipped in rows if not skipped)


def _judgments_exclude(*, campaign_id: int, rater_id: int, since: datetime | None) -> int:
    """Exclude the rater's judgments from ``since`` (all when None) and free their slots, so
    the items get judgments from someone else. Caller holds the membership row locked."""
    changed, counted = _judgments_mark(
        campaign_id=campaign_id, rater_id=rater_id, since=since, excluded=True
    )
    if counted:
        # One judgment per rater and item, so each item loses exactly one.
        Item.objects.filter(pk__in=counted).update(judgment_count=F("judgment_count") - 1)
    return changed


def _judgments_restore(*, campaign_id: int, rater_id: int, since: datetime | None) -> int:
    """Undo ``_judgments_exclude``. An item that was refilled meanwhile keeps every judgment:
    its target rises to hold them (this may pass the campaign's max overlap)."""
    changed, counted = _judgments_mark(
        campaign_id=campaign_id, rater_id=rater_id, since=since, excluded=False
    )
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
    return changed


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
    """Pause an active membership and log it. Assumes: in a transaction, membership row locked,
    the reason checked. Raises ValidationError for a member who does not hold the rater role."""
    if problems := raters_check([membership.rater]):
        raise ValidationError({"rater": problems})
    window_start = window_starts(campaign).get(membership.rater_id) if exclude else None
    membership.status = MembershipStatus.PAUSED
    membership.paused_reason = reason[:MAX_REASON]
    membership.paused_at = timezone.now()
    membership.save(update_fields=["status", "paused_reason", "paused_at"])
    leases_release(
        Lease.objects.filter(campaign=campaign, rater_id=membership.rater_id, released=False)
    )
    excluded = (
        _judgments_exclude(
            campaign_id=campaign.pk, rater_id=membership.rater_id, since=window_start
        )
        if exclude
        else 0
    )
    events.publish(
        events.RATER_PAUSED,
        object_type="campaign_membership",
        object_id=membership.pk,
        data={
            "campaign": campaign.pk,
            "rater": membership.rater_id,
            "cause": cause,
            "reason": membership.paused_reason,
        },
    )
    return MembershipEvent.objects.create(
        membership=membership,
        action=MembershipAction.PAUSED,
        cause=cause,
        reason=reason[:MAX_REASON],
        actor=actor,
        excluded_judgments=excluded,
        metrics=metrics or {},
        window_start=window_start,
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
    _check_reason(reason)
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


def rater_auto_pause(
    *, campaign: Campaign, rater_id: int, cause: str, reason: str, metrics: dict
) -> MembershipEvent | None:
    """The automatic check pauses an active rater whose figures fell below the policy; their
    judgments in the evaluation window stop counting. None when they are no longer active.
    Assumes: in a transaction."""
    membership = _membership_locked(campaign, rater_id)
    if membership.status != MembershipStatus.ACTIVE:
        return None
    return _pause(
        campaign=campaign,
        membership=membership,
        cause=cause,
        reason=reason,
        actor=None,
        exclude=True,
        metrics=metrics,
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
    checks start a fresh window from now (they need the minimum numbers again). A rater who
    has not passed the campaign's qualification stays paused (409)."""
    _check_reason(reason or "")
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
    membership.status = MembershipStatus.ACTIVE
    membership.paused_reason = ""
    membership.paused_at = None
    membership.save(update_fields=["status", "paused_reason", "paused_at"])
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


@transaction.atomic
def raters_add(*, campaign: Campaign, raters: Sequence[AbstractBaseUser]) -> int:
    """Add active memberships for ``raters`` (existing ones are left as they are) and return
    how many are new; a campaign that requires a qualification pauses the new members who have
    not passed it, in this transaction, so no item is leased to them before the gate looked."""
    if problems := raters_check(raters):
        raise ValidationError({"raters": problems})
    new_ids = {r.pk for r in raters} - set(
        CampaignMembership.objects.filter(campaign=campaign).values_list("rater_id", flat=True)
    )
    CampaignMembership.objects.bulk_create(
        [CampaignMembership(campaign=campaign, rater=r) for r in raters], ignore_conflicts=True
    )
    if new_ids:
        qualification_gate_apply(campaign=campaign, rater_ids=sorted(new_ids))
    return len(new_ids)


@transaction.atomic
def campaign_membership_set(
    *,
    campaign: Campaign,
    rater: AbstractBaseUser,
    status: str = MembershipStatus.ACTIVE,
    reason: str = "",
    actor: AbstractBaseUser | None = None,
    exclude: bool = True,
) -> CampaignMembership:
    """The campaign's raters form: add a rater (active), or pause or resume a member, by the
    rules above. A pause is ``rater_pause``'s, ``exclude`` and its default included, so it
    ends the same from here as from the quality pause endpoint. A new member asked to be
    active may still be paused by the qualification gate; one already active stays as they
    are."""
    if status not in MembershipStatus.values:
        raise ValidationError({"status": [f"Unknown status {status!r}; use active or paused."]})
    if problems := raters_check([rater]):
        raise ValidationError({"rater": problems})
    _check_reason(reason or "")
    added = raters_add(campaign=campaign, raters=[rater])
    membership = CampaignMembership.objects.get(campaign=campaign, rater=rater)
    if status == MembershipStatus.PAUSED:
        if not (added and membership.status == MembershipStatus.PAUSED):
            rater_pause(
                campaign=campaign, rater_id=rater.pk, reason=reason, actor=actor, exclude=exclude
            )
    elif not added and membership.status == MembershipStatus.PAUSED:
        rater_resume(campaign=campaign, rater_id=rater.pk, actor=actor, reason=reason)
    return CampaignMembership.objects.get(pk=membership.pk)


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
