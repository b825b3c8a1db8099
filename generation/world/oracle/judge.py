"""``Oracle``: what the trained judges see in stickers and animations, as factor probabilities.

Load once (``Oracle.load()``, a few milliseconds) and call as often as needed. Judging runs on
the CPU in float32 under ``torch.no_grad``, in batches of ``BATCH``. Images of any mode and size
are accepted: they are converted to RGBA (no alpha counts as opaque) and resized to 64x64, see
``model.encode_image``. A clip is a list of exactly 8 frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import factors
from . import store
from .model import CLIP_HEADS, IMAGE_HEADS, encode_clip, encode_image, frame_features, to_input

# Measured on one core: a batch of 64 images takes about 25 ms and 64 clips about 80 ms; larger
# batches gain nothing and hold more memory.
BATCH = 64
Judgement = dict[str, dict[str, float]]


class Oracle:
    """The image oracle (subject, colour, expression, style parts) and the animation oracle
    (motion, smoothness), with the config they were loaded from."""

    def __init__(self, *, image: nn.Module, animation: nn.Module, config: dict) -> None:
        self.image = image
        self.animation = animation
        self.config = config

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Oracle:
        """The oracles in ``folder`` (default: the committed weights). Raises ``OracleError``
        naming the file when one is missing, corrupt or made for other factor values."""
        folder = Path(folder) if folder is not None else store.DEFAULT_FOLDER
        config = store.read_config(folder)
        return cls(
            image=store.read(folder, "image", config),
            animation=store.read(folder, "animation", config),
            config=config,
        )

    @property
    def trained_with_current_sources(self) -> bool:
        """Whether the renderer and oracle sources are those the weights were trained with."""
        return store.trained_with_current_sources(self.config)

    def judge_images(self, images: list[Image.Image]) -> list[Judgement]:
        """Per image, each head's probability of each value, and ``sticker_style``: the
        probability that every style part is in style (the product of the parts')."""
        out = _judge(self.image, IMAGE_HEADS, [encode_image(image) for image in images])
        for judgement in out:
            yes = 1.0
            for part, value in factors.IN_STYLE.items():
                yes *= judgement[part][value]
            judgement["sticker_style"] = {"yes": yes, "no": 1.0 - yes}
        return out

    def judge_animations(self, clips: list[list[Image.Image]]) -> list[Judgement]:
        """Per clip, the probability of each motion (``still`` included) and of each
        smoothness."""
        encoded = [encode_clip(frames) for frames in clips]
        return _judge(self._animation_logits, CLIP_HEADS, encoded)

    def _animation_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.animation(x, frame_features(self.image, x))

    def predict_images(self, images: list[Image.Image]) -> list[dict[str, str]]:
        return [_argmax(judgement) for judgement in self.judge_images(images)]

    def predict_animations(self, clips: list[list[Image.Image]]) -> list[dict[str, str]]:
        return [_argmax(judgement) for judgement in self.judge_animations(clips)]


def _judge(logits_of, heads: dict, encoded: list[np.ndarray]) -> list[Judgement]:
    """Softmax of ``logits_of`` (a network, or a function of the input batch) over each head,
    in batches of ``BATCH``."""
    out: list[Judgement] = []
    with torch.no_grad():
        for start in range(0, len(encoded), BATCH):
            logits = logits_of(to_input(np.stack(encoded[start : start + BATCH])))
            probabilities = {
                head: torch.softmax(values, dim=1).tolist() for head, values in logits.items()
            }
            for row in range(len(next(iter(probabilities.values())))):
                out.append(
                    {
                        head: dict(zip(values, probabilities[head][row], strict=True))
                        for head, values in heads.items()
                    }
                )
    return out


def _argmax(judgement: Judgement) -> dict[str, str]:
    return {head: max(values, key=values.get) for head, values in judgement.items()}
