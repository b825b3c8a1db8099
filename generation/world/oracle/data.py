"""Labelled renders for the oracles, drawn from one seed stream, and the training augmentation.

Images and clips of a stream never share a draw: image ``i`` is draw ``2 i`` of the stream and
clip ``i`` is draw ``2 i + 1``. Specs are mixed in style, as weak data is; a clip's motion
(or standing still) and its smoothness are drawn uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from .. import factors
from ..render import StickerSpec, render_animation, render_sticker
from ..sampling import sample_spec, stream_rng
from .model import CLIP_HEADS, IMAGE_HEADS, NONE, encode_clip, encode_image


@dataclass(frozen=True)
class Clip:
    spec: StickerSpec
    motion: str
    smoothness: str


def image_spec(stream: str, index: int) -> StickerSpec:
    return sample_spec(stream_rng(stream, 2 * index))


def clip_draw(stream: str, index: int) -> Clip:
    rng = stream_rng(stream, 2 * index + 1)
    spec = sample_spec(rng)
    motion = rng.choice(CLIP_HEADS["motion"])
    return Clip(spec, motion, rng.choice(CLIP_HEADS["smoothness"]))


def image_truth(spec: StickerSpec) -> dict[str, str]:
    """The value of every image head for ``spec``."""
    truth = {"subject": spec.subject, "colour": spec.colour, "expression": spec.expression or NONE}
    truth.update({part: getattr(spec, part) for part in factors.STYLE_PARTS})
    return truth


def clip_truth(clip: Clip) -> dict[str, str]:
    return {"motion": clip.motion, "smoothness": clip.smoothness}


@dataclass(frozen=True)
class Labelled:
    """Encoded inputs (N, C, 64, 64) uint8 and, per head, the index of the true value (N,)."""

    inputs: np.ndarray
    labels: dict[str, np.ndarray]


def _label(truths: list[dict[str, str]], heads: dict[str, tuple[str, ...]]) -> dict:
    return {
        head: np.array([values.index(truth[head]) for truth in truths], dtype=np.int64)
        for head, values in heads.items()
    }


def image_set(stream: str, start: int, count: int) -> Labelled:
    specs = [image_spec(stream, index) for index in range(start, start + count)]
    inputs = np.stack([encode_image(render_sticker(spec)) for spec in specs])
    return Labelled(inputs, _label([image_truth(spec) for spec in specs], IMAGE_HEADS))


def clip_set(stream: str, start: int, count: int) -> Labelled:
    clips = [clip_draw(stream, index) for index in range(start, start + count)]
    inputs = np.stack(
        [
            encode_clip(render_animation(clip.spec, clip.motion, smoothness=clip.smoothness))
            for clip in clips
        ]
    )
    return Labelled(inputs, _label([clip_truth(clip) for clip in clips], CLIP_HEADS))


@dataclass(frozen=True)
class Flips:
    """Which samples of a batch were mirrored left to right, and which clips play backwards."""

    mirrored: torch.Tensor  # indices into the batch
    reversed: torch.Tensor


def augmented_input(
    batch: torch.Tensor, generator: torch.Generator, *, frames: int = 1
) -> tuple[torch.Tensor, Flips]:
    """``model.to_input`` of a uint8 batch (N, frames * 4, H, W), augmented, and its flips.

    Half the samples are mirrored left to right (every factor, motions included, reads the same
    in a mirror) and half the clips play backwards (a loop played backwards is the same motion,
    and as smooth or jerky). Then light damage, as a model's output might show: a gain and
    offset of a few percent per colour channel, a little box blur on a third of the samples,
    and per-pixel noise of up to 5/255 (one noise map per frame, on all four channels). Every
    frame of a clip gets the same gain, offset and blur. All far weaker than what tells factor
    values apart (grain is about 20/255, the thin outline a full pixel, colours at least 25
    levels apart). Written to touch a clip batch (33 MB in float32) as few times as possible:
    each pass costs about 50 ms on one core."""
    n, channels, height, width = batch.shape
    batch = batch.clone()
    mirrored = (torch.rand(n, generator=generator) < 0.5).nonzero().squeeze(1)
    batch[mirrored] = batch[mirrored].flip(3)
    reversed_ = torch.zeros(0, dtype=torch.long)
    if frames > 1:
        reversed_ = (torch.rand(n, generator=generator) < 0.5).nonzero().squeeze(1)
        clips = batch.view(n, frames, 4, height, width)
        clips[reversed_] = clips[reversed_].flip(1)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    gain = torch.ones(n, 4)
    gain[:, :3] = uniform(0.95, 1.05, n, 3) * uniform(0.96, 1.04, n, 1)
    offset = torch.zeros(n, 4)
    offset[:, :3] = uniform(-0.02, 0.02, n, 1)
    gain = gain.repeat(1, frames)[:, :, None, None]
    offset = offset.repeat(1, frames)[:, :, None, None]
    # (u / 255 - 0.5) * gain + offset in one pass.
    x = torch.addcmul(offset - 0.5 * gain, batch.float(), gain / 255)
    rows = (torch.rand(n, generator=generator) < 1 / 3).nonzero().squeeze(1)
    if len(rows):
        picked = x[rows]
        blurred = functional.avg_pool2d(picked, 3, stride=1, padding=1, count_include_pad=False)
        x[rows] = picked.lerp_(blurred, uniform(0.2, 0.7, len(rows))[:, None, None, None])
    sigma = uniform(0.0, 5 / 255, n)[:, None, None, None, None]
    noise = torch.randn(n, frames, 1, height, width, generator=generator)
    x = x.view(n, frames, 4, height, width).addcmul_(noise, sigma).view(batch.shape)
    return x.clamp_(-0.5, 0.5), Flips(mirrored, reversed_)
