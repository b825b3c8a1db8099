"""Factories for curation tests: stored sticker and animation candidates, campaigns, judgments.

Rows are made directly (the annotation services' lease-and-submit path is tested there); files
are real PNGs and animated WebPs in the test's storage.
"""

import itertools

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.models import (
    Campaign,
    CampaignMembership,
    Item,
    ItemCandidate,
    Judgment,
    MembershipStatus,
)
from annotation.schema import normalise_schema
from generation.models import Candidate, ModelKind, ModelRole, ModelVersion, Prompt, PromptSet
from generation.pipelines import encode_animated_webp, encode_png, motion_score, sha256_hex
from stickerloop.services import user_create_with_roles
from training_bridge.rules import dataset_rule_create

ALIGNMENT_SCHEMA = [
    {"key": "aligned", "type": "binary", "label": "Does it show the prompt?"},
    {"key": "quality", "type": "likert", "label": "How good a sticker?"},
]
MOTION_SCHEMA = [
    {"key": "motion_pass", "type": "binary", "label": "Good motion?", "per_candidate": True},
    {"key": "best", "type": "pick", "label": "Best", "required": False},
]

_counter = itertools.count(1)


def sticker_pixels(seed: int, size: int = 32) -> np.ndarray:
    """A distinct RGBA sticker per seed: random blocks inside a transparent margin."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    rgb = np.kron(blocks, np.ones((size // 4, size // 4, 1), dtype=np.uint8))
    alpha = np.zeros((size, size, 1), dtype=np.uint8)
    alpha[2:-2, 2:-2] = 255
    alpha[4, 4] = 128
    return np.concatenate([rgb, alpha], axis=2)


class Factory:
    def __init__(self):
        self.models: dict[str, ModelVersion] = {}
        self.prompt_sets: dict[bool, PromptSet] = {}

    def model(self, name: str, kind: str = ModelKind.IMAGE, role: str = ModelRole.BASE):
        if name not in self.models:
            self.models[name], _ = ModelVersion.objects.get_or_create(
                name=name, defaults={"kind": kind, "role": role, "uri": f"/models/{name}"}
            )
        return self.models[name]

    def prompt(self, text: str, *, held_out: bool = False, enhanced: str = "") -> Prompt:
        prompt_set = self.prompt_sets.get(held_out)
        if prompt_set is None:
            prompt_set = self.prompt_sets[held_out] = PromptSet.objects.create(
                name=f"set-{'held' if held_out else 'main'}-{next(_counter)}", is_held_out=held_out
            )
        existing = prompt_set.prompts.filter(text=text).first()
        if existing:
            return existing
        return Prompt.objects.create(
            prompt_set=prompt_set,
            position=prompt_set.prompts.count(),
            text=text,
            enhanced_text=enhanced,
        )

    def sticker(
        self,
        prompt_text: str,
        *,
        seed: int | None = None,
        pixels=None,
        model: str = "sticker-base",
        held_out: bool = False,
        enhanced: str = "",
        file_data: bytes | None = None,
    ) -> Candidate:
        seed = next(_counter) if seed is None else seed
        prompt = self.prompt(prompt_text, held_out=held_out, enhanced=enhanced)
        data = (
            file_data
            if file_data is not None
            else encode_png(sticker_pixels(seed) if pixels is None else pixels)
        )
        key = f"candidates/test/{model}/{prompt.pk}-{seed}.png"
        default_storage.save(key, ContentFile(data))
        return Candidate.objects.create(
            kind="sticker",
            model_version=self.model(model),
            prompt=prompt,
            seed=seed,
            raw_prompt=prompt.text,
            enhanced_prompt=prompt.enhanced_text,
            file=key,
            width=32,
            height=32,
            file_size=len(data),
            sha256=sha256_hex(data),
        )

    def animation(
        self, source: Candidate, *, teacher: str, seed: int = 0, frames: int = 4
    ) -> Candidate:
        base = sticker_pixels(source.seed)
        moving = [np.roll(base, shift=i * (1 + seed % 3), axis=1) for i in range(frames)]
        data = encode_animated_webp(moving, fps=8)
        model = self.model(teacher, kind=ModelKind.ANIMATION, role=ModelRole.TEACHER)
        key = f"candidates/test/{teacher}/{source.pk}-{seed}.webp"
        prefix = key.removesuffix(".webp") + "/"
        for index, frame in enumerate(moving):
            default_storage.save(f"{prefix}frame-{index:03d}.png", ContentFile(encode_png(frame)))
        default_storage.save(key, ContentFile(data))
        return Candidate.objects.create(
            kind="animation",
            model_version=model,
            prompt=source.prompt,
            source=source,
            seed=seed,
            raw_prompt=source.raw_prompt,
            motion_prompt="waves",
            file=key,
            frames_prefix=prefix,
            width=32,
            height=32,
            frame_count=frames,
            file_size=len(data),
            sha256=sha256_hex(data),
            motion_score=motion_score(moving),
        )

    def campaign(self, *, kind: str = "single", schema=None, name: str | None = None) -> Campaign:
        schema = schema if schema is not None else ALIGNMENT_SCHEMA
        return Campaign.objects.create(
            name=name or f"campaign-{next(_counter)}",
            kind=kind,
            question_schema=normalise_schema(schema, kind=kind),
            status="running",
        )

    def item(self, campaign: Campaign, candidates: list[Candidate], *, gold: bool = False) -> Item:
        item = Item.objects.create(campaign=campaign, is_gold=gold, overlap_target=3)
        ItemCandidate.objects.bulk_create(
            [ItemCandidate(item=item, candidate=c, position=i) for i, c in enumerate(candidates)]
        )
        return item

    def rater(self, name: str, campaign: Campaign | None = None, *, paused: bool = False):
        user = user_create_with_roles(username=name, password="pw", roles=["rater"])
        if campaign is not None:
            CampaignMembership.objects.update_or_create(
                campaign=campaign,
                rater=user,
                defaults={"status": MembershipStatus.PAUSED if paused else MembershipStatus.ACTIVE},
            )
        return user

    def judge(
        self, item: Item, rater, answers: dict, *, skipped: bool = False, excluded: bool = False
    ) -> Judgment:
        return Judgment.objects.create(
            item=item,
            rater=rater,
            campaign_id=item.campaign_id,
            answers=answers,
            seconds_on_item=2.5,
            skipped=skipped,
            skip_reason="unsure" if skipped else "",
            excluded=excluded,
        )

    def alignment_rule(
        self,
        prompts: list[str],
        curator,
        *,
        raters: int = 2,
        per_prompt: int = 1,
        quality: int = 3,
        **values,
    ):
        """An alignment rule over one campaign: ``per_prompt`` stickers for each prompt, every
        one judged aligned by each of ``raters`` raters. ``values`` add to the rule's."""
        campaign = self.campaign(name="align")
        judges = [self.rater(f"r{i}", campaign) for i in range(raters)]
        for prompt in prompts:
            for _ in range(per_prompt):
                item = self.item(campaign, [self.sticker(prompt)])
                for judge in judges:
                    self.judge(item, judge, {"aligned": True, "quality": quality})
        return dataset_rule_create(
            values={
                "name": "align",
                "purpose": "alignment",
                "campaigns": [campaign],
                "conditions": [{"question": "aligned", "labels": [True]}],
                **values,
            },
            created_by=curator,
        )


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Raters are made by the dozen here; PBKDF2 would spend about 0.4 s on each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make(db):
    return Factory()
