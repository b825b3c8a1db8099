"""Rater accounts made by curators: a new rater with a one-time set-password link, shown once
or e-mailed, and the campaigns they join. The account itself is ``stickerloop.services``'s
(users and roles), membership is ``membership.raters_add``'s; this module joins the two."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Campaign, CampaignStatus
from annotation.quality.services.membership import raters_add
from stickerloop.errors import ServiceConflict
from stickerloop.roles import Role, user_roles
from stickerloop.services import password_link_send, password_set_path, user_invite


@dataclass(frozen=True)
class RaterInvitation:
    rater: AbstractBaseUser
    link_path: str  # the set-password page's path; ``settings.SITE_URL`` + it was e-mailed
    emailed: bool


def _campaigns_check(campaigns: Sequence[Campaign]) -> None:
    closed = [c.name for c in campaigns if c.status == CampaignStatus.CLOSED]
    if closed:
        raise ValidationError(
            {"campaigns": [f"Campaign(s) {', '.join(closed)} are closed; raters cannot join."]}
        )


@transaction.atomic
def rater_account_create(
    *,
    username: str,
    email: str = "",
    send_email: bool = False,
    campaigns: Sequence[Campaign] = (),
    invited_by: AbstractBaseUser,
) -> RaterInvitation:
    """A new account holding only the rater role, with no password, a member of ``campaigns``.

    It returns the path of the one-time page where the rater chooses a password
    (``stickerloop.services.password_set_path``); with ``send_email`` it is also e-mailed to
    ``email`` once the transaction commits. Errors name the field; nothing is written then.
    """
    errors: dict[str, list[str]] = {}
    if send_email and not (email or "").strip():
        errors["email"] = ["Give the e-mail address to send the link to."]
    try:
        _campaigns_check(campaigns)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    rater = user_invite(username=username, email=email, roles=[Role.RATER])
    for campaign in campaigns:
        raters_add(campaign=campaign, raters=[rater])
    path = password_set_path(user=rater)
    if send_email:
        password_link_send(
            user=rater, link=settings.SITE_URL + path, invited_by=invited_by.get_username()
        )
    return RaterInvitation(rater=rater, link_path=path, emailed=send_email)


def rater_link_issue(*, rater: AbstractBaseUser) -> str:
    """A new set-password link for a rater who has not chosen a password yet (the first was
    lost). Refused (ServiceConflict) once they have one, and for an account holding any other
    role: a curator must not be able to set the password of a curator or an admin."""
    if user_roles(rater) != {Role.RATER}:
        raise ServiceConflict(f"{rater.get_username()} holds other roles than rater.")
    if rater.has_usable_password():
        raise ServiceConflict(
            f"{rater.get_username()} has chosen a password already; no new link is needed."
        )
    return password_set_path(user=rater)


@transaction.atomic
def rater_campaigns_add(*, rater: AbstractBaseUser, campaigns: Sequence[Campaign]) -> int:
    """Make the rater a member of ``campaigns`` (``raters_add``: the qualification gate
    applies); returns how many memberships are new."""
    if not campaigns:
        raise ValidationError({"campaigns": ["Choose at least one campaign."]})
    _campaigns_check(campaigns)
    return sum(raters_add(campaign=campaign, raters=[rater]) for campaign in campaigns)
