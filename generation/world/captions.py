"""Captions from templates with synonyms and word-order variety, and their vocabulary.

A caption names the subject and colour, the expression where the subject has a face, and
optionally how the image looks (style words) and how it moves (a motion word). All words come
from ``factors``; ``vocabulary`` lists every word a caption can contain, which is what a
word-level tokenizer for the world's text encoder needs.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from . import factors
from .render import StickerSpec

WITH_FACE = (
    "a {e} {c} {s}",
    "{c} {s}, {e}",
    "sticker of a {e} {c} {s}",
    "{e} {s} in {c}",
    "a {c} {s} looking {e}",
)
WITHOUT_FACE = (
    "a {c} {s}",
    "{c} {s} sticker",
    "sticker of a {c} {s}",
    "a {s} in {c}",
    "{s}, {c}",
)
MOTION_TEMPLATES = ("{caption}, {m}", "{m} {caption}")
WORD = re.compile(r"\w+|[^\w\s]+")


def _articles(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def caption(
    spec: StickerSpec,
    rng: random.Random,
    *,
    motion: str | None = None,
    style_parts: int = 0,
) -> str:
    """A caption of ``spec``; ``style_parts`` of its style parts are described in words."""
    subject = factors.SUBJECT_BY_NAME[spec.subject]
    words = {
        "s": rng.choice(subject.words),
        "c": rng.choice(factors.COLOUR_BY_NAME[spec.colour].words),
    }
    if spec.expression is None:
        text = rng.choice(WITHOUT_FACE).format(**words)
    else:
        words["e"] = rng.choice(factors.EXPRESSIONS[spec.expression])
        text = rng.choice(WITH_FACE).format(**words)
    if style_parts:
        parts = rng.sample(list(factors.STYLE_PARTS), style_parts)
        phrases = [rng.choice(factors.STYLE_WORDS[part][getattr(spec, part)]) for part in parts]
        text = ", ".join([text, *phrases])
    if motion is not None and motion != factors.STILL:
        word = rng.choice(factors.MOTION_BY_NAME[motion].words)
        text = rng.choice(MOTION_TEMPLATES).format(caption=text, m=word)
    return _articles(text)


def mislabel(spec: StickerSpec, rng: random.Random) -> tuple[StickerSpec, str]:
    """A copy of ``spec`` wrong in exactly one content factor, and that factor's name.

    Weak captions are wrong this way: the caption names another subject, colour or expression
    than the image shows. A subject swap keeps the face-or-not kind so the caption stays valid.
    """
    choices = ["subject", "colour"] + (["expression"] if spec.expression is not None else [])
    factor = rng.choice(choices)
    if factor == "colour":
        others = [name for name in factors.COLOUR_NAMES if name != spec.colour]
        return replace(spec, colour=rng.choice(others)), factor
    if factor == "expression":
        others = [name for name in factors.EXPRESSION_NAMES if name != spec.expression]
        return replace(spec, expression=rng.choice(others)), factor
    has_face = spec.expression is not None
    others = [
        subject.name
        for subject in factors.SUBJECTS
        if subject.has_face == has_face and subject.name != spec.subject
    ]
    return replace(spec, subject=rng.choice(others)), factor


def vocabulary() -> list[str]:
    """Every word and punctuation mark a caption can contain, sorted."""
    texts = [*WITH_FACE, *WITHOUT_FACE, *MOTION_TEMPLATES, "an"]
    texts += [word for subject in factors.SUBJECTS for word in subject.words]
    texts += [word for colour in factors.COLOURS for word in colour.words]
    texts += [word for words in factors.EXPRESSIONS.values() for word in words]
    texts += [word for motion in factors.MOTIONS for word in motion.words]
    texts += [
        phrase
        for part in factors.STYLE_WORDS.values()
        for phrases in part.values()
        for phrase in phrases
    ]
    words = {
        token for text in texts for token in WORD.findall(re.sub(r"\{\w+\}", " ", text).lower())
    }
    return sorted(words)


def parse(text: str) -> dict[str, str | None]:
    """What a caption asks for: subject, colour, expression and motion (None where unnamed).

    Reads the words ``caption`` writes, so it recovers the content of any caption the world
    wrote; for other text, the first synonym of each factor found wins.
    """
    tokens = WORD.findall(text.lower())

    def first(table: dict[str, tuple[str, ...]]) -> str | None:
        for token in tokens:
            for name, words in table.items():
                if token in words:
                    return name
        return None

    return {
        "subject": first({subject.name: subject.words for subject in factors.SUBJECTS}),
        "colour": first({colour.name: colour.words for colour in factors.COLOURS}),
        "expression": first(factors.EXPRESSIONS),
        "motion": first({motion.name: motion.words for motion in factors.MOTIONS}),
    }
