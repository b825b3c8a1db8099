"""Simulation writes, through the platform's own services: the simulated raters' accounts (as an
admin makes accounts, tokens and memberships) and candidates rendered by the sticker world (as
any import of outside images is made).

Nothing here stores a rater's profile: the accounts are plain rater accounts named
``sim-<seed>-<index>``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Campaign, CampaignStatus
from annotation.quality import selectors as quality_selectors
from annotation.quality.services.membership import raters_add
from generation.models import Candidate, CandidateKind
from generation.services.candidates import ImportedCandidate, candidates_import
from generation.world import captions, factors, render, sampling
from generation.world.render import StickerSpec
from stickerloop.roles import Role
from stickerloop.services import token_issue, user_create_with_roles

# The simulated raters' stickers are evaluation data: they come from the held-out stream, far
# past the indices of the held-out prompts that evaluation draws (``sampling.prompts`` takes the
# first few thousand), so the two never share a draw and no training path sees either.
STREAM = "heldout"
FIRST_INDEX = 1_000_000


def simulated_username(*, seed: int, index: int) -> str:
    return f"sim-{seed}-{index}"


def _joinable_problem(campaign: Campaign) -> str | None:
    where = f"Campaign {campaign.pk} ({campaign.name!r})"
    if campaign.status != CampaignStatus.RUNNING:
        return f"{where} is {campaign.status}; simulated raters join running campaigns only."
    policy = quality_selectors.policy_for(campaign)
    if policy.qualification_campaign_id is not None:
        return (
            f"{where} requires the qualification campaign "
            f"{policy.qualification_campaign.name!r}, which new raters have not passed."
        )
    return None


def simulation_campaign_check(*, campaign_id: int) -> Campaign:
    """The campaign simulated raters are to join; ValidationError keyed ``campaign`` when it
    does not exist or new raters cannot rate in it (not running, or behind a qualification)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise ValidationError({"campaign": [f"Campaign {campaign_id} does not exist."]})
    if problem := _joinable_problem(campaign):
        raise ValidationError({"campaign": [problem]})
    return campaign


def _reusable_problems(usernames: list[str]) -> list[str]:
    """Accounts of these names that are not simulated raters' (a password, or a role other
    than rater): the simulation must not take them over."""
    problems = []
    for user in get_user_model().objects.filter(username__in=usernames).prefetch_related("groups"):
        roles = {group.name for group in user.groups.all()}
        if user.has_usable_password() or roles != {Role.RATER.value} or user.is_staff:
            problems.append(f"User {user.username!r} exists and is not a simulated rater.")
    return problems


@transaction.atomic
def simulated_raters_enrol(
    *, campaign: Campaign, seed: int, count: int
) -> list[tuple[AbstractBaseUser, str]]:
    """``count`` rater accounts ``sim-<seed>-<index>`` (token only, no password), each with an
    API token and a membership of ``campaign``; returns (user, token key) by index.

    Accounts of an earlier run with the same seed are used again. All or nothing: a campaign
    that cannot be joined (checked again under its row lock) or a name held by another account
    leaves no account, token or membership behind (ValidationError naming it).
    """
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 500:
        raise ValidationError({"raters": [f"Must be an integer from 1 to 500, not {count!r}."]})
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if problem := _joinable_problem(campaign):
        raise ValidationError({"campaign": [problem]})
    names = [simulated_username(seed=seed, index=i) for i in range(count)]
    if problems := _reusable_problems(names):
        raise ValidationError({"raters": problems})
    users = [
        user_create_with_roles(username=name, password=None, roles=[Role.RATER]) for name in names
    ]
    tokens = [token_issue(user=user).key for user in users]
    raters_add(campaign=campaign, raters=users)
    return list(zip(users, tokens, strict=True))


@dataclass(frozen=True)
class WorldSticker:
    """A rendered sticker imported as a candidate, and what only the evaluation knows of it:
    the spec drawn, and whether its prompt names something else."""

    candidate: Candidate
    spec: StickerSpec
    prompt_wrong: bool


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def world_stickers_import(
    *, source: str, count: int, wrong_share: float, start: int = 0
) -> list[WorldSticker]:
    """Render draws ``start`` to ``start + count - 1`` of the simulated raters' part of the
    held-out stream (mixed style) and import them as sticker candidates of ``source``. A share
    ``wrong_share`` of the prompts names another subject, colour or expression than the sticker
    shows.

    Files go to deterministic keys and the import is keyed by content, so importing the same
    draws again stores nothing twice.
    """
    if not 0.0 <= wrong_share <= 1.0:
        raise ValidationError({"wrong_share": [f"Must be from 0 to 1, not {wrong_share!r}."]})
    drawn, rows = [], []
    for index in range(start, start + count):
        rng = sampling.stream_rng(STREAM, FIRST_INDEX + index)
        spec = sampling.sample_spec(rng)
        described, wrong = spec, rng.random() < wrong_share
        if wrong:
            described, _ = captions.mislabel(spec, rng)
        data = _png(render.render_sticker(spec))
        key = f"world/{STREAM}/{FIRST_INDEX + index:07d}.png"
        if not default_storage.exists(key):
            default_storage.save(key, ContentFile(data))
        rows.append(
            ImportedCandidate(
                kind=CandidateKind.STICKER,
                raw_prompt=captions.caption(described, rng),
                width=factors.SIZE,
                height=factors.SIZE,
                file=key,
                sha256=hashlib.sha256(data).hexdigest(),
                file_size=len(data),
            )
        )
        drawn.append((spec, wrong))
    imported = candidates_import(source=source, rows=rows).candidates
    return [
        WorldSticker(candidate=c, spec=spec, prompt_wrong=wrong)
        for c, (spec, wrong) in zip(imported, drawn, strict=True)
    ]
