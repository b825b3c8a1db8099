"""Experiments whose arms' candidates are drawn here, picture by picture, rather than generated:
the statistics tests need to know every pixel, inference time and judgment."""

from collections.abc import Callable

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from annotation.models import Item
from generation.models import Candidate, GenerationBatch
from generation.pipelines import encode_png, sha256_hex
from tests import factories
from training_bridge.experiments.models import Experiment, ExperimentArm
from training_bridge.experiments.services.experiments import (
    ArmSpec,
    experiment_advance,
    experiment_create,
)
from training_bridge.jobs.evaluation import evaluation_key

RED = (255, 0, 0, 255)
GREEN = (0, 255, 0, 255)
CLEAR = (0, 0, 0, 0)


def flat(colour: tuple) -> Image.Image:
    return Image.new("RGBA", (64, 64), colour)


def half_red() -> Image.Image:
    """Red on the left 32 columns, transparent on the right: on the 16-pixel embedding half
    the cells are red and half are empty."""
    pixels = np.zeros((64, 64, 4), dtype=np.uint8)
    pixels[:, :32] = RED
    return Image.fromarray(pixels, mode="RGBA")


def store_candidate(
    arm: ExperimentArm, *, key: tuple[int, int], image: Image.Image, inference_ms: float
) -> Candidate:
    """One candidate of ``arm`` for ``key`` (prompt position, seed) or (source id, seed)."""
    data = encode_png(np.asarray(image))
    name = f"candidates/experiment/{arm.pk}/{key[0]}-{key[1]}.png"
    default_storage.save(name, ContentFile(data))
    batch = arm.batch
    if batch.kind == "sticker":
        prompt = arm.prompt_set.prompts.get(position=key[0])
        fields = {
            "kind": "sticker",
            "prompt": prompt,
            "raw_prompt": prompt.text,
            "enhanced_prompt": prompt.enhanced_text,
        }
    else:
        source = Candidate.objects.get(pk=key[0])
        fields = {
            "kind": "animation",
            "prompt": source.prompt,
            "source": source,
            "raw_prompt": source.raw_prompt,
            "frame_count": 8,
        }
    return Candidate.objects.create(
        batch=batch,
        model_version=arm.model_version,
        seed=key[1],
        file=name,
        width=image.width,
        height=image.height,
        file_size=len(data),
        sha256=sha256_hex(data),
        inference_ms=inference_ms,
        device="cpu",
        params={"num_inference_steps": 4},
        **fields,
    )


def finish_batches(experiment: Experiment) -> None:
    GenerationBatch.objects.filter(
        pk__in=experiment.arms.values_list("batch_id", flat=True)
    ).update(status="succeeded")


def item_keys(campaign) -> dict[int, list[tuple[str, tuple[int, int]]]]:
    """item id -> [(arm label, key)] of its candidates in display order."""
    arms = {arm.batch_id: arm.label for arm in ExperimentArm.objects.filter(batch__isnull=False)}
    shown = {}
    for item in Item.objects.filter(campaign=campaign).prefetch_related(
        "item_candidates__candidate__prompt"
    ):
        links = sorted(item.item_candidates.all(), key=lambda link: link.position)
        shown[item.pk] = [
            (arms[link.candidate.batch_id], evaluation_key(link.candidate)) for link in links
        ]
    return shown


@pytest.fixture
def raters(db):
    return [factories.user(f"exp-rater-{i}", ["rater"]) for i in range(3)]


@pytest.fixture
def image_experiment(db, engineer, raters) -> Callable:
    """An image experiment of two arms on three held-out prompts and seeds 0 and 1: the base
    ``sticker-a + template`` and ``sticker-b``. ``draw(arm, key)`` gives each candidate's
    picture and inference time; the experiment is advanced to rating."""

    def make(draw, *, skip: set = frozenset()) -> Experiment:
        prompt_set = factories.prompt_set(
            ["a red cat", "a green frog", "a blue whale"], held_out=True
        )
        experiment = experiment_create(
            name="tailoring vs base",
            arms=[
                ArmSpec(
                    model_version=factories.model_version("sticker-a"),
                    template="a sticker of {prompt}, thick white outline",
                    is_base=True,
                ),
                ArmSpec(model_version=factories.model_version("sticker-b")),
            ],
            prompt_set=prompt_set,
            seeds=[0, 1],
            created_by=engineer,
        )
        for arm in experiment.arms.select_related("batch", "prompt_set", "model_version"):
            for position in range(3):
                for seed in (0, 1):
                    if (arm.label, (position, seed)) in skip:
                        continue
                    image, ms = draw(arm.label, (position, seed))
                    store_candidate(arm, key=(position, seed), image=image, inference_ms=ms)
        finish_batches(experiment)
        assert experiment_advance(experiment_id=experiment.pk) is True
        experiment.refresh_from_db()
        return experiment

    return make
