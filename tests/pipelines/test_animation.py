import numpy as np
import pytest
import torch
from PIL import Image

from generation.pipelines import (
    check_animation_inputs,
    encode_png,
    generate_animations,
    load_pipeline,
    motion_score,
)
from generation.pipelines.animation import prepare_source, restore_transparency

DEFAULTS = {"num_inference_steps": 6, "guidance_scale": 5.0, "width": 64, "height": 64}


def _sticker(colour=(220, 30, 30), size=64) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    quarter = size // 4
    image.paste(Image.new("RGBA", (2 * quarter, 2 * quarter), (*colour, 255)), (quarter, quarter))
    return image


def _inputs(**overrides):
    return {
        "source_images": [_sticker()],
        "prompts": ["waving"],
        "seeds": [0],
        "num_frames": 8,
        **DEFAULTS,
        **overrides,
    }


def _bytes(animation) -> list[bytes]:
    return [encode_png(frame) for frame in animation.frames]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_frames": 1}, "`num_frames` has to be an integer between 2 and 32 but is 1."),
        ({"num_frames": 33}, "`num_frames` has to be an integer between 2 and 32 but is 33."),
        (
            {"source_images": []},
            "`source_images` and `prompts` have to have the same length but have 0 and 1 items.",
        ),
        ({"source_images": ["not an image"]}, "`source_images` has to be a list of PIL images."),
        ({"strength": 0.0}, "`strength` has to be in (0, 1] but is 0.0."),
        ({"strength": 1.5}, "`strength` has to be in (0, 1] but is 1.5."),
        (
            {"num_inference_steps": 1, "strength": 0.5},
            "`num_inference_steps` * `strength` has to leave at least one denoising step but "
            "int(1 * 0.5) is 0.",
        ),
        ({"width": 60}, "`height` and `width` have to be divisible by 8 but are 64 and 60."),
        (
            {"seeds": [0, 1]},
            "`prompts` and `seeds` have to have the same length but have 1 and 2 items.",
        ),
    ],
)
def test_check_animation_inputs_messages(overrides, message):
    with pytest.raises(ValueError) as excinfo:
        check_animation_inputs(**_inputs(**overrides))

    assert str(excinfo.value) == message


def test_generates_rgba_frames_with_their_motion_score(teacher_pipeline):
    sources = [_sticker(), _sticker((30, 30, 220))]

    animations = generate_animations(
        teacher_pipeline,
        source_images=sources,
        prompts=["waving", "jumping"],
        seeds=[0, 1],
        **DEFAULTS,
    )

    assert [(a.prompt, a.seed, len(a.frames)) for a in animations] == [
        ("waving", 0, 8),
        ("jumping", 1, 8),
    ]
    for animation in animations:
        assert {(f.mode, f.size) for f in animation.frames} == {("RGBA", (64, 64))}
        assert animation.motion_score == motion_score(animation.frames)
        assert 0.0 < animation.motion_score <= 1.0
        assert animation.inference_ms > 0


def test_same_seed_gives_identical_frames_and_another_seed_differs(teacher_pipeline):
    kwargs = {"source_images": [_sticker()], "prompts": ["waving"], "num_frames": 4, **DEFAULTS}

    first = generate_animations(teacher_pipeline, seeds=[5], **kwargs)[0]
    again = generate_animations(teacher_pipeline, seeds=[5], **kwargs)[0]
    other = generate_animations(teacher_pipeline, seeds=[6], **kwargs)[0]

    assert _bytes(first) == _bytes(again)
    assert _bytes(first) != _bytes(other)


def test_teachers_animate_differently(teacher_pipeline, pipeline_models):
    teacher_b = load_pipeline(
        pipeline_models["anim-teacher-b"]["uri"],
        kind="animation",
        device="cpu",
        dtype=torch.float32,
    )
    kwargs = {"source_images": [_sticker()], "prompts": ["waving"], "seeds": [0], "num_frames": 4}

    a = generate_animations(teacher_pipeline, **kwargs, **DEFAULTS)[0]
    b = generate_animations(teacher_b, **kwargs, **DEFAULTS)[0]

    assert _bytes(a) != _bytes(b)


def test_sources_of_another_size_are_resized(teacher_pipeline):
    animation = generate_animations(
        teacher_pipeline,
        source_images=[_sticker(size=32)],
        prompts=["waving"],
        seeds=[0],
        num_frames=2,
        **DEFAULTS,
    )[0]

    assert [frame.size for frame in animation.frames] == [(64, 64), (64, 64)]


def test_generate_animations_rejects_an_image_pipeline(sticker_pipeline):
    with pytest.raises(ValueError) as excinfo:
        generate_animations(sticker_pipeline, **_inputs())

    assert str(excinfo.value) == "`loaded` has to be an animation pipeline but is 'image'."


def test_generate_animations_rejects_a_bad_background(teacher_pipeline):
    with pytest.raises(ValueError) as excinfo:
        generate_animations(teacher_pipeline, **_inputs(), background=(255, 255))

    assert str(excinfo.value) == (
        "`background` has to be three integers between 0 and 255 but is (255, 255)."
    )


def test_prepare_source_composites_over_the_background_and_keeps_alpha():
    composite, alpha = prepare_source(_sticker(size=8), size=(8, 8), background=(255, 255, 255))

    assert composite.mode == "RGB"
    assert composite.getpixel((0, 0)) == (255, 255, 255)
    assert composite.getpixel((4, 4)) == (220, 30, 30)
    assert alpha[0, 0] == 0 and alpha[4, 4] == 255


def test_restore_transparency_reuses_source_alpha_where_still_and_mattes_motion():
    # given: a red square and one half-transparent blue pixel over white
    source = np.zeros((16, 16, 4), dtype=np.uint8)
    source[4:8, 4:8] = (255, 0, 0, 255)
    source[14, 1] = (0, 0, 255, 128)
    background = (255, 255, 255)
    composite, source_alpha = prepare_source(
        Image.fromarray(source), size=(16, 16), background=background
    )
    still = np.asarray(composite)
    moved = still.copy()
    moved[4:8, 4:8] = background
    moved[8:12, 8:12] = (255, 0, 0)

    # when
    restored_still = restore_transparency(
        still, source=still, source_alpha=source_alpha, background=background
    )
    restored_moved = restore_transparency(
        moved, source=still, source_alpha=source_alpha, background=background
    )

    # then: an unchanged frame gets the source alpha back exactly
    assert np.array_equal(restored_still[..., 3], source[..., 3])
    assert np.array_equal(restored_still[4:8, 4:8, :3], source[4:8, 4:8, :3])
    # and where the square moved, the old place is transparent and the new one opaque
    expected = np.zeros((16, 16), dtype=np.uint8)
    expected[8:12, 8:12] = 255
    expected[14, 1] = 128
    assert np.array_equal(restored_moved[..., 3], expected)
