"""Named seed streams and the samplers: reproducible, apart from each other, in the rates the
weak corpus promises."""

import pytest

from generation.world import factors
from generation.world.captions import parse
from generation.world.factors import WorldError
from generation.world.sampling import (
    STREAMS,
    sample_spec,
    stream_rng,
    weak_sample,
)


def draws(stream: str, index: int) -> list[float]:
    rng = stream_rng(stream, index)
    return [rng.random() for _ in range(4)]


def test_streams_are_reproducible_and_differ_from_each_other_and_by_index():
    assert draws("weak", 7) == draws("weak", 7)
    firsts = {tuple(draws(stream, 7)) for stream in STREAMS}
    assert len(firsts) == len(STREAMS)
    assert draws("weak", 7) != draws("weak", 8)


def test_an_unknown_stream_is_refused_naming_it():
    with pytest.raises(WorldError) as refused:
        stream_rng("train", 0)

    assert (refused.value.field, str(refused.value)) == (
        "stream",
        "`stream` has to be one of weak, weak-motion, heldin, heldout, oracle, oracle-eval, "
        "demo but is 'train'.",
    )


def test_sticker_style_draws_are_always_in_style_and_off_style_draws_never():
    stickers = [sample_spec(stream_rng("oracle", i), style="sticker") for i in range(300)]
    off = [sample_spec(stream_rng("oracle", i), style="off") for i in range(300)]

    assert all(s.in_style for s in stickers)
    assert not any(s.in_style for s in off)
    # they fail in one, two or more parts, and every value of every part turns up
    failing = {sum(getattr(s, p) != v for p, v in factors.IN_STYLE.items()) for s in off}
    assert {1, 2, 3} <= failing
    for part, values in factors.STYLE_PARTS.items():
        assert {getattr(s, part) for s in off} == set(values), part


def test_sample_spec_refuses_an_unknown_style_or_factor():
    with pytest.raises(WorldError) as style:
        sample_spec(stream_rng("oracle", 0), style="fancy")
    with pytest.raises(WorldError) as factor:
        sample_spec(stream_rng("oracle", 0), size="large")

    assert (style.value.field, str(style.value)) == (
        "style",
        "`style` has to be one of mixed, sticker, off but is 'fancy'.",
    )
    assert (factor.value.field, str(factor.value)) == (
        "size",
        "`size` is not a factor of the sticker world.",
    )


def content(spec) -> dict:
    return {"subject": spec.subject, "colour": spec.colour, "expression": spec.expression}


@pytest.mark.parametrize("animated", [False, True])
def test_weak_captions_are_wrong_in_one_factor_about_15_percent_of_the_time(animated):
    samples = [weak_sample(i, animated=animated) for i in range(2000)]
    wrong = [s for s in samples if s.wrong_factor is not None]

    assert 0.12 <= len(wrong) / len(samples) <= 0.18
    assert {s.wrong_factor for s in wrong} == {"subject", "colour", "expression"}
    for sample in samples:
        parsed = parse(sample.caption)
        said = {k: parsed[k] for k in ("subject", "colour", "expression")}
        assert said == content(sample.caption_spec), sample
        if sample.wrong_factor is None:
            assert sample.caption_spec == sample.spec
        else:
            factor = sample.wrong_factor
            assert said[factor] != getattr(sample.spec, factor), sample
            differing = [k for k, v in content(sample.spec).items() if said[k] != v]
            assert differing == [factor], sample
        moving = sample.motion not in (None, factors.STILL)
        assert parsed["motion"] == (sample.motion if moving else None), sample


def test_weak_samples_are_reproducible_and_clips_come_from_their_own_stream():
    assert weak_sample(5) == weak_sample(5)
    clip = weak_sample(5, animated=True)
    assert clip == weak_sample(5, animated=True)
    assert clip.spec != weak_sample(5).spec
    assert (clip.motion in (*factors.MOTION_NAMES, factors.STILL)) and clip.smoothness
    assert (weak_sample(5).motion, weak_sample(5).smoothness) == (None, None)
