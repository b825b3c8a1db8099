"""The rating step: submit, lease the next items, skip and undo."""

import json
import random
import uuid
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
    CampaignStatus,
    Item,
    ItemCandidate,
    Judgment,
    Lease,
    MembershipStatus,
)
from annotation.selectors import CampaignConfig, campaign_config
from annotation.services.leases import lease_sweep_if_due, lease_sweep_now
from stickerloop.errors import ServiceConflict

MAX_SKIP_REASON = 200
MAX_SECONDS_ON_ITEM = 86400.0


def max_held_leases() -> int:
    """Leases one rater may hold in a campaign: the current item plus the prefetched ones."""
    return settings.ANNOTATION_MAX_HELD_LEASES


def undo_window() -> timedelta:
    return timedelta(seconds=settings.ANNOTATION_UNDO_SECONDS)


@dataclass(frozen=True)
class Submission:
    """What the rater sends for one item (answers checked by ``submission_check``).

    ``answers`` name the shown candidates by display position, as the rater sees them;
    ``submission_check`` returns a submission whose ``answers`` name them by candidate id (as
    stored) and whose ``answers_shown`` keeps the rater's form.
    """

    item_id: int
    client_id: uuid.UUID
    seconds_on_item: float
    answers: dict = field(default_factory=dict)
    skipped: bool = False
    skip_reason: str = ""
    answers_shown: dict = field(default_factory=dict)


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
    # The judgment's answers as the rater names candidates (by display position).
    answers_shown: dict = field(default_factory=dict)

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
    """Validate a submission against the campaign's schema; return it with clean answers, by
    candidate id (see ``Submission``)."""
    from annotation.schema import answers_by_candidate, validate_answers

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
        # Checked by position, so that no message names a candidate id.
        shown = validate_answers(
            config.schema, submission.answers, candidate_ids=list(range(len(candidate_ids)))
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return Submission(
        item_id=submission.item_id,
        client_id=submission.client_id,
        seconds_on_item=float(seconds),
        answers=answers_by_candidate(config.schema, shown, candidate_ids=candidate_ids)
        if candidate_ids
        else shown,
        answers_shown=shown,
    )


def answers_shown(*, config: CampaignConfig, item_id: int, answers: dict) -> dict:
    """Stored answers as the rater names candidates (by display position): one query, only
    when the schema names candidates."""
    from annotation.schema import answers_by_position

    if not (config.needs_candidate_ids and answers):
        return answers
    candidate_ids = list(
        ItemCandidate.objects.filter(item_id=item_id)
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    return answers_by_position(config.schema, answers, candidate_ids=candidate_ids)


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


def _step_as_python_statements(
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


def _step_as_sql_function_call(
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
                out = assignment.rate_step_function_call(**args)
        else:
            # Autocommit: the function call is its own transaction, one round trip.
            out = assignment.rate_step_function_call(**args)
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
                again = _step_as_sql_function_call(
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


def step_uses_sql_function() -> bool:
    """Whether ``rating_step`` calls the SQL function ``annotation_rate_step`` (PostgreSQL with
    ANNOTATION_RATE_STEP_IN_DATABASE on) rather than running the statements from Python."""
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
        lease_sweep_if_due(config.id)
    step = _step_as_sql_function_call if step_uses_sql_function() else _step_as_python_statements
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
    if result.judgment is not None:
        result.answers_shown = (
            answers_shown(
                config=config, item_id=result.judgment.item_id, answers=result.judgment.answers
            )
            if result.replayed
            else submission.answers_shown
        )
    if fetch and not result.item_ids:
        refusal = _fetch_refusal(
            config,
            member_status=result.member_status,
            paused_reason=result.paused_reason,
            campaign_status=result.campaign_status,
        )
        if refusal is not None and submission is None:
            raise refusal
        if refusal is None and lease_sweep_now(config.id):
            # The queue looked empty: expired leases were holding the last open items.
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
    # As the rater names candidates (by display position).
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
        item_id=item.pk,
        answers=answers_shown(
            config=campaign_config(campaign.pk), item_id=item.pk, answers=last.answers
        ),
        skipped=last.skipped,
        skip_reason=last.skip_reason,
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
