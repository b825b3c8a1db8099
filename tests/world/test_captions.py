"""Captions: every caption the world writes parses back to its content, and the vocabulary
holds every token."""

import random

from generation.world import factors
from generation.world.captions import WORD, caption, parse, vocabulary
from generation.world.render import StickerSpec
from generation.world.sampling import sample_spec, stream_rng, weak_sample


def test_parse_recovers_the_content_of_every_caption_form():
    rng = random.Random(0)
    for index in range(600):
        spec = sample_spec(stream_rng("heldin", index))
        motion = rng.choice((None, factors.STILL, *factors.MOTION_NAMES))
        text = caption(spec, rng, motion=motion, style_parts=index % 3)

        assert parse(text) == {
            "subject": spec.subject,
            "colour": spec.colour,
            "expression": spec.expression,
            "motion": None if motion in (None, factors.STILL) else motion,
        }, text


def test_every_synonym_is_parsed_to_its_factor():
    for subject in factors.SUBJECTS:
        for word in subject.words:
            assert parse(f"a red {word}")["subject"] == subject.name
    for colour in factors.COLOURS:
        for word in colour.words:
            assert parse(f"a {word} star")["colour"] == colour.name
    for name, words in factors.EXPRESSIONS.items():
        for word in words:
            assert parse(f"a {word} red cat")["expression"] == name
    for motion in factors.MOTIONS:
        for word in motion.words:
            assert parse(f"a red star, {word}")["motion"] == motion.name


def test_captions_use_an_before_a_vowel():
    spec = StickerSpec("cat", "orange", "angry")
    texts = {caption(spec, random.Random(seed)) for seed in range(60)}

    assert not any(" a orange" in t or t.startswith("a orange") for t in texts)
    assert any("an orange" in t or "an angry" in t for t in texts)


def test_the_vocabulary_covers_every_token_of_2000_weak_captions():
    known = set(vocabulary())
    tokens = {
        token
        for index in range(2000)
        for animated in (False, True)
        for token in WORD.findall(weak_sample(index, animated=animated).caption.lower())
    }

    assert tokens - known == set()
    assert vocabulary() == sorted(known)
