"""Stored candidates (real PNG and animated WebP files), prompts, campaigns and raters.

Candidates are made directly with real files in the test's storage rather than by running
diffusion: these tests are about rating them.
"""

import itertools

import numpy as np
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.models import Campaign
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_add
from generation.models import Candidate, ModelKind, ModelVersion, Prompt, PromptSet, Tag
from generation.pipelines import encode_animated_webp, encode_png, sha256_hex
from stickerloop.roles import Role
from stickerloop.services import user_create_with_roles

_counter = itertools.count(1)


def pixels(seed: int, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, 3] = 0  # a transparent band, so the checkerboard shows
    return rgba


def model_version(name: str | None = None, kind: str = ModelKind.IMAGE) -> ModelVersion:
    name = name or f"model-{next(_counter)}"
    version, _ = ModelVersion.objects.get_or_create(
        name=name, defaults={"kind": kind, "uri": f"/models/{name}"}
    )
    return version


def prompt(text: str | None = None, tags: tuple[str, ...] = ()) -> Prompt:
    prompt_set, _ = PromptSet.objects.get_or_create(name="annotation tests")
    position = prompt_set.prompts.count()
    made = Prompt.objects.create(
        prompt_set=prompt_set, position=position, text=text or f"a sticker {next(_counter)}"
    )
    for tag in tags:
        made.tags.add(Tag.objects.get_or_create(name=tag)[0])
    return made


def sticker(
    *,
    version: ModelVersion | None = None,
    on_prompt: Prompt | None = None,
    seed: int = 0,
    text: str | None = None,
) -> Candidate:
    n = next(_counter)
    version = version or model_version("sticker-model")
    data = encode_png(pixels(n))
    key = default_storage.save(f"test/sticker-{n}.png", ContentFile(data))
    return Candidate.objects.create(
        kind="sticker",
        model_version=version,
        prompt=on_prompt,
        seed=seed,
        raw_prompt=text if text is not None else (on_prompt.text if on_prompt else f"sticker {n}"),
        file=key,
        width=16,
        height=16,
        file_size=len(data),
        sha256=sha256_hex(data),
    )


def animation(
    *, source: Candidate, version: ModelVersion | None = None, seed: int = 0, frames: int = 4
) -> Candidate:
    n = next(_counter)
    version = version or model_version("anim-model", kind=ModelKind.ANIMATION)
    images = [pixels(n * 100 + i) for i in range(frames)]
    data = encode_animated_webp(images, fps=8)
    key = default_storage.save(f"test/anim-{n}.webp", ContentFile(data))
    prefix = key.removesuffix(".webp") + "/"
    for i, image in enumerate(images):
        default_storage.save(f"{prefix}frame-{i:03d}.png", ContentFile(encode_png(image)))
    return Candidate.objects.create(
        kind="animation",
        model_version=version,
        prompt=source.prompt,
        source=source,
        seed=seed,
        raw_prompt=source.raw_prompt,
        motion_prompt="waves hello",
        params={"fps": 8},
        file=key,
        frames_prefix=prefix,
        width=16,
        height=16,
        frame_count=frames,
        file_size=len(data),
        sha256=sha256_hex(data),
    )


def ensure_roles() -> None:
    """The role groups come from a data migration; a transactional test's flush removes them."""
    for role in Role.values:
        Group.objects.get_or_create(name=role)


def user(name: str, roles: list[str]):
    ensure_roles()
    return user_create_with_roles(username=name, password="pw-" + name, roles=roles)


def rater(name: str | None = None):
    ensure_roles()
    return user_create_with_roles(
        username=name or f"rater-{next(_counter)}", password="pw", roles=["rater"]
    )


def running_campaign(
    *,
    raters,
    n_items: int = 5,
    kind: str = "single",
    overlap: int = 1,
    max_overlap=None,
    preset=None,
    question_schema=None,
    lease_seconds: int = 600,
    gold_rate: float = 0.0,
    groups=None,
    name: str | None = None,
) -> Campaign:
    campaign = campaign_create(
        name=name or f"campaign {next(_counter)}",
        kind=kind,
        preset=preset,
        question_schema=question_schema,
        overlap=overlap,
        max_overlap=max_overlap,
        lease_seconds=lease_seconds,
        gold_rate=gold_rate,
        raters=raters,
    )
    if groups is None:
        groups = [[sticker()] for _ in range(n_items)]
    campaign_items_add(campaign=campaign, candidate_groups=groups, seed=7)
    return campaign_start(campaign=campaign)
