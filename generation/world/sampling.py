"""Named seed streams and the samplers that draw specs, captions and prompts from them.

Every random draw of the world comes from a stream named for its use. Training paths draw from
``weak`` and ``heldin``; the oracles train on ``oracle`` and are scored on ``oracle-eval``; the
evaluation prompts come from ``heldout``. Streams are seeded by hashing their name and index, so
no two streams share a draw and the held-out split cannot be reached from a training path.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from . import factors
from .captions import caption, mislabel
from .factors import WorldError, check_choice
from .render import StickerSpec

STREAMS = ("weak", "weak-motion", "heldin", "heldout", "oracle", "oracle-eval", "demo")
TRAINING_STREAMS = ("weak", "weak-motion", "heldin", "demo")
EVALUATION_STREAMS = ("heldout", "oracle", "oracle-eval")
# Each style part is in style with this probability in mixed data: 0.75^4, about 0.32 of
# images are stickers in every respect.
PART_IN_STYLE = 0.75
WRONG_CAPTION_RATE = 0.15
STYLE_WORDS_RATE = 0.4


def stream_rng(stream: str, index: int) -> random.Random:
    """The random generator of draw ``index`` of ``stream``."""
    check_choice("stream", stream, STREAMS)
    digest = hashlib.sha256(f"stickerloop-world:{stream}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sample_spec(rng: random.Random, *, style: str = "mixed", **fixed) -> StickerSpec:
    """A random spec; ``style`` is "mixed", "sticker" (in style) or "off" (at least one part off).

    ``fixed`` pins factors (e.g. ``subject="cat"``); an unknown factor name is refused.
    """
    check_choice("style", style, ("mixed", "sticker", "off"))
    unknown = sorted(set(fixed) - {"subject", "colour", "expression", *factors.STYLE_PARTS})
    if unknown:
        raise WorldError(unknown[0], f"`{unknown[0]}` is not a factor of the sticker world.")
    subject = fixed.get("subject") or rng.choice(factors.SUBJECT_NAMES)
    check_choice("subject", subject, factors.SUBJECT_NAMES)
    colour = fixed.get("colour") or rng.choice(factors.COLOUR_NAMES)
    expression = fixed.get("expression")
    if expression is None and factors.SUBJECT_BY_NAME[subject].has_face:
        expression = rng.choice(factors.EXPRESSION_NAMES)
    parts = {}
    for part, values in factors.STYLE_PARTS.items():
        # "off" draws parts as "mixed" does and then forces one part off if none is, so its
        # images fail in one, two or more ways, as weak data does.
        keep = style == "sticker" or rng.random() < PART_IN_STYLE
        parts[part] = values[0] if keep else rng.choice(values[1:])
    if style == "off" and all(parts[p] == factors.IN_STYLE[p] for p in parts):
        part = rng.choice(list(factors.STYLE_PARTS))
        parts[part] = rng.choice(factors.STYLE_PARTS[part][1:])
    for part in factors.STYLE_PARTS:
        if part in fixed:
            parts[part] = fixed[part]
    return StickerSpec(
        subject=subject,
        colour=colour,
        expression=expression,
        seed=rng.randrange(2**31),
        **parts,
    )


@dataclass(frozen=True)
class WeakSample:
    """One weak-corpus item: what is drawn, what the caption says, and whether they differ."""

    spec: StickerSpec
    caption: str
    caption_spec: StickerSpec
    wrong_factor: str | None
    motion: str | None = None
    smoothness: str | None = None


def weak_sample(index: int, *, animated: bool = False) -> WeakSample:
    """Draw ``index`` of the weak corpus (stream ``weak``, or ``weak-motion`` for clips).

    Style is mixed; about 15 % of captions are wrong in one content factor; about 40 % of
    captions describe one or two style parts truthfully; clips move in one of the motions, or
    stand still, smoothly or jerkily.
    """
    rng = stream_rng("weak-motion" if animated else "weak", index)
    spec = sample_spec(rng)
    motion = smoothness = None
    if animated:
        motion = rng.choice((*factors.MOTION_NAMES, factors.STILL))
        smoothness = rng.choice(factors.SMOOTHNESS)
    described, wrong = spec, None
    if rng.random() < WRONG_CAPTION_RATE:
        described, wrong = mislabel(spec, rng)
    style_parts = rng.choice((1, 2)) if rng.random() < STYLE_WORDS_RATE else 0
    text = caption(described, rng, motion=motion, style_parts=style_parts)
    return WeakSample(spec, text, described, wrong, motion, smoothness)


@dataclass(frozen=True)
class Prompt:
    """A prompt and the content it asks for (subject, colour, expression)."""

    text: str
    subject: str
    colour: str
    expression: str | None


def prompts(stream: str, count: int) -> list[Prompt]:
    """``count`` content prompts (no style words) drawn from ``stream``."""
    out = []
    for index in range(count):
        rng = stream_rng(stream, index)
        spec = sample_spec(rng, style="sticker")
        out.append(Prompt(caption(spec, rng), spec.subject, spec.colour, spec.expression))
    return out
