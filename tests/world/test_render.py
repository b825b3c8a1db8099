"""The renderer: deterministic pixels, the size and frame count, and what each style part
does to the alpha channel and the border."""

import numpy as np
import pytest

from generation.pipelines.encode import encode_animated_webp, encode_png
from generation.world import factors
from generation.world.factors import WorldError
from generation.world.render import StickerSpec, render_animation, render_sticker
from generation.world.sampling import sample_spec, stream_rng


def alpha(image) -> np.ndarray:
    return np.asarray(image)[..., 3]


def border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


def spec(**changes) -> StickerSpec:
    values = {"subject": "cat", "colour": "red", "expression": "happy", "seed": 11, **changes}
    return StickerSpec(**values)


def test_the_same_spec_gives_the_same_bytes_and_another_seed_other_pixels():
    # given
    first, again, other = spec(), spec(), spec(seed=12)
    # when
    still = encode_png(render_sticker(first))
    clip = encode_animated_webp(render_animation(first, "wave", smoothness="jerky"))
    # then
    assert encode_png(render_sticker(again)) == still
    assert encode_animated_webp(render_animation(again, "wave", smoothness="jerky")) == clip
    assert not np.array_equal(np.asarray(render_sticker(other)), np.asarray(render_sticker(first)))


@pytest.mark.parametrize("subject", factors.SUBJECT_NAMES)
def test_every_subject_renders_a_64_pixel_rgba_sticker(subject):
    expression = "sad" if factors.SUBJECT_BY_NAME[subject].has_face else None
    for colour in ("red", "green", "brown"):
        image = render_sticker(StickerSpec(subject, colour, expression, seed=3))

        assert (image.mode, image.size) == ("RGBA", (64, 64))
        # the subject is drawn: a good part of the canvas is solid
        assert (alpha(image) == 255).sum() > 64 * 64 // 10


@pytest.mark.parametrize("motion", [*factors.MOTION_NAMES, factors.STILL])
def test_every_motion_gives_eight_64_pixel_frames_that_move_unless_still(motion):
    for smoothness in factors.SMOOTHNESS:
        frames = render_animation(spec(subject="sun"), motion, smoothness=smoothness)

        assert len(frames) == 8
        assert {(f.mode, f.size) for f in frames} == {("RGBA", (64, 64))}
        distinct = {np.asarray(f).tobytes() for f in frames}
        if motion == factors.STILL and smoothness == "smooth":
            assert len(distinct) == 1
        else:
            assert len(distinct) > 1


def test_in_style_stickers_have_fully_transparent_corners():
    for index in range(40):
        sticker = sample_spec(stream_rng("heldin", index), style="sticker")
        corners = alpha(render_sticker(sticker))[[0, 0, -1, -1], [0, -1, 0, -1]]

        assert sticker.in_style
        assert corners.tolist() == [0, 0, 0, 0], sticker


@pytest.mark.parametrize("background", ["opaque", "textured"])
def test_opaque_and_textured_backgrounds_are_solid_everywhere(background):
    for index in range(12):
        sticker = sample_spec(stream_rng("heldin", index), background=background)

        assert alpha(render_sticker(sticker)).min() == 255, sticker


def test_off_centre_keeps_the_subject_whole_and_cropped_touches_the_border():
    for index in range(60):
        rng = stream_rng("heldin", index)
        drawn = sample_spec(rng, background="transparent", placement="offcentre")
        cropped = sample_spec(rng, background="transparent", placement="cropped")
        centre = np.argwhere(alpha(render_sticker(drawn)) > 0).mean(axis=0)

        assert border(alpha(render_sticker(drawn))).max() == 0, drawn
        # and it is off the centre: its mass lies at least 6 pixels from the middle
        assert np.hypot(*(centre - 31.5)) > 6, drawn
        # cut by the edge: a run of solid pixels on the border, not a stray antialiased one
        assert (border(alpha(render_sticker(cropped))) == 255).sum() >= 4, cropped


def test_truth_lists_every_factor_and_whether_it_is_a_sticker():
    assert spec(outline="thin").truth() == {
        "subject": "cat",
        "colour": "red",
        "expression": "happy",
        "background": "transparent",
        "outline": "thin",
        "finish": "flat",
        "placement": "centred",
        "sticker_style": False,
    }
    assert StickerSpec("star", "blue", seed=5).truth() == {
        "subject": "star",
        "colour": "blue",
        "expression": None,
        "background": "transparent",
        "outline": "white",
        "finish": "flat",
        "placement": "centred",
        "sticker_style": True,
    }


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"subject": "dog"},
            "subject",
            "`subject` has to be one of face, cat, bear, frog, fish, bird, ghost, heart, star, "
            "sun, cloud, cup, flower, moon but is 'dog'.",
        ),
        (
            {"colour": "teal"},
            "colour",
            "`colour` has to be one of red, orange, yellow, green, blue, purple, pink, brown "
            "but is 'teal'.",
        ),
        (
            {"expression": "bored"},
            "expression",
            "`expression` has to be one of happy, sad, surprised, angry, sleepy but is 'bored'.",
        ),
        (
            {"expression": None},
            "expression",
            "`expression` has to be one of happy, sad, surprised, angry, sleepy but is None.",
        ),
        (
            {"subject": "star"},
            "expression",
            "`expression` has to be None for a star, which has no face.",
        ),
        (
            {"background": "glossy"},
            "background",
            "`background` has to be one of transparent, opaque, textured but is 'glossy'.",
        ),
        (
            {"outline": "gold"},
            "outline",
            "`outline` has to be one of white, none, thin but is 'gold'.",
        ),
        (
            {"finish": "matte"},
            "finish",
            "`finish` has to be one of flat, shaded, noisy but is 'matte'.",
        ),
        (
            {"placement": "left"},
            "placement",
            "`placement` has to be one of centred, offcentre, cropped but is 'left'.",
        ),
        ({"seed": -1}, "seed", "`seed` has to be a non-negative integer but is -1."),
    ],
)
def test_a_spec_with_an_unknown_value_is_refused_naming_the_field(changes, field, message):
    with pytest.raises(WorldError) as refused:
        spec(**changes)

    assert (refused.value.field, str(refused.value)) == (field, message)


@pytest.mark.parametrize(
    ("motion", "smoothness", "field", "message"),
    [
        (
            "fly",
            "smooth",
            "motion",
            "`motion` has to be one of bounce, spin, pulse, shake, wave, blink, still but is "
            "'fly'.",
        ),
        (
            "spin",
            "silky",
            "smoothness",
            "`smoothness` has to be one of smooth, jerky but is 'silky'.",
        ),
    ],
)
def test_an_unknown_motion_or_smoothness_is_refused_naming_the_field(
    motion, smoothness, field, message
):
    with pytest.raises(WorldError) as refused:
        render_animation(spec(), motion, smoothness=smoothness)

    assert (refused.value.field, str(refused.value)) == (field, message)


def test_a_jerky_clip_stutters_once_and_keeps_its_motion():
    from generation.world.motions import transforms

    for seed in range(50):
        smooth = transforms("blink", 8, "smooth", seed=seed, has_face=True)
        jerky = transforms("blink", 8, "jerky", seed=seed, has_face=True)
        # a blink keeps a shut frame however it stutters
        assert any(t.eyes_closed for t in jerky)
        held = [i for i in range(1, 8) if jerky[i].eyes_closed != smooth[i].eyes_closed]
        assert len(held) <= 1
        spin = transforms("spin", 8, "jerky", seed=seed, has_face=False)
        angles = [t.angle for t in spin]
        assert len(set(angles)) == 7
        assert all(abs(t.dx) <= 3 and abs(t.dy) <= 3 for t in spin)
