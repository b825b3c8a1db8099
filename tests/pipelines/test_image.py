import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from generation.pipelines import (
    LoadedPipeline,
    check_sticker_inputs,
    encode_png,
    generate_stickers,
    matte_background,
)

PROMPTS = ["a happy cat sticker", "a sad dog sticker", "a red balloon", "a blue star"]
DEFAULTS = {"num_inference_steps": 8, "guidance_scale": 5.0, "width": 64, "height": 64}


def _inputs(**overrides):
    return {"prompts": ["a cat"], "seeds": [0], **DEFAULTS, **overrides}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"height": 60}, "`height` and `width` have to be divisible by 8 but are 60 and 64."),
        ({"width": 0}, "`height` and `width` have to be positive integers but are 64 and 0."),
        ({"prompts": []}, "`prompts` has to be a non-empty list of strings."),
        ({"prompts": "a cat"}, "`prompts` has to be a non-empty list of strings."),
        (
            {"prompts": ["a cat", None], "seeds": [0, 1]},
            "`prompts` has to be a non-empty list of strings.",
        ),
        (
            {"seeds": [0, 1]},
            "`prompts` and `seeds` have to have the same length but have 1 and 2 items.",
        ),
        ({"seeds": [-1]}, "`seeds` have to be integers between 0 and 2**63 - 1 but contain -1."),
        (
            {"seeds": [True]},
            "`seeds` have to be integers between 0 and 2**63 - 1 but contain True.",
        ),
        (
            {"num_inference_steps": 0},
            "`num_inference_steps` has to be an integer between 1 and 200 but is 0.",
        ),
        (
            {"num_inference_steps": 201},
            "`num_inference_steps` has to be an integer between 1 and 200 but is 201.",
        ),
        ({"guidance_scale": 30.5}, "`guidance_scale` has to be between 0 and 30 but is 30.5."),
        ({"guidance_scale": -1}, "`guidance_scale` has to be between 0 and 30 but is -1."),
    ],
)
def test_check_sticker_inputs_messages(overrides, message):
    with pytest.raises(ValueError) as excinfo:
        check_sticker_inputs(**_inputs(**overrides))

    assert str(excinfo.value) == message


def test_check_sticker_inputs_accepts_valid_inputs():
    assert check_sticker_inputs(**_inputs(prompts=["a", "b"], seeds=[0, 2**63 - 1])) is None


def test_generates_one_rgba_sticker_per_prompt_with_model_alpha(sticker_pipeline):
    stickers = generate_stickers(sticker_pipeline, prompts=PROMPTS, seeds=[0, 1, 2, 3], **DEFAULTS)

    assert [(s.prompt, s.seed) for s in stickers] == list(zip(PROMPTS, [0, 1, 2, 3], strict=True))
    assert [(s.image.mode, s.image.size, s.alpha_source) for s in stickers] == [
        ("RGBA", (64, 64), "model")
    ] * 4
    assert all(s.inference_ms > 0 for s in stickers)


def test_same_seed_gives_identical_pixels_and_another_seed_differs(sticker_pipeline):
    first = generate_stickers(sticker_pipeline, prompts=PROMPTS[:2], seeds=[7, 8], **DEFAULTS)
    again = generate_stickers(sticker_pipeline, prompts=PROMPTS[:2], seeds=[7, 8], **DEFAULTS)
    other = generate_stickers(sticker_pipeline, prompts=PROMPTS[:2], seeds=[9, 8], **DEFAULTS)

    assert [encode_png(s.image) for s in first] == [encode_png(s.image) for s in again]
    assert encode_png(other[0].image) != encode_png(first[0].image)
    assert encode_png(other[1].image) == encode_png(first[1].image)


def test_negative_prompt_changes_the_result(sticker_pipeline):
    plain = generate_stickers(sticker_pipeline, prompts=PROMPTS[:1], seeds=[3], **DEFAULTS)
    negative = generate_stickers(
        sticker_pipeline, prompts=PROMPTS[:1], seeds=[3], negative_prompt="blurry", **DEFAULTS
    )

    assert encode_png(plain[0].image) != encode_png(negative[0].image)


def test_rgb_model_gets_alpha_by_matting(sticker_pipeline, teacher_pipeline):
    # given: the sticker model with the animation model's 3-channel VAE, whose decoder is the
    # RGB part of the RGBA decoder
    base = sticker_pipeline.pipe
    rgb_pipe = StableDiffusionPipeline(
        vae=teacher_pipeline.pipe.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        scheduler=base.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    rgb_pipe.set_progress_bar_config(disable=True)
    loaded = LoadedPipeline(
        pipe=rgb_pipe,
        kind="image",
        uri="in-memory",
        device="cpu",
        dtype=torch.float32,
        max_prompt_tokens=77,
        has_alpha=False,
        class_name="StableDiffusionPipeline",
    )

    # when
    matted = generate_stickers(loaded, prompts=PROMPTS[:2], seeds=[0, 1], **DEFAULTS)
    modelled = generate_stickers(sticker_pipeline, prompts=PROMPTS[:2], seeds=[0, 1], **DEFAULTS)

    # then: the same RGB (up to float rounding between the 3- and 4-channel decoders)
    # wherever matting left alpha at 0 or 255, as no colour unmixing happens there
    for result, reference in zip(matted, modelled, strict=True):
        assert (result.alpha_source, result.image.mode, result.image.size) == (
            "matting",
            "RGBA",
            (64, 64),
        )
        rgba = np.asarray(result.image)
        untouched = (rgba[..., 3] == 0) | (rgba[..., 3] == 255)
        expected = np.asarray(reference.image)[..., :3]
        difference = rgba[..., :3][untouched].astype(int) - expected[untouched]
        assert np.abs(difference).max() <= 1


def test_generate_stickers_rejects_an_animation_pipeline(teacher_pipeline):
    with pytest.raises(ValueError) as excinfo:
        generate_stickers(teacher_pipeline, prompts=["a"], seeds=[0], **DEFAULTS)

    assert str(excinfo.value) == "`loaded` has to be an image pipeline but is 'animation'."


def test_matte_background_removes_plain_background_and_keeps_enclosed_holes():
    # given: white background, a red ring enclosing a white "eye", one soft pixel
    rgb = np.full((16, 16, 3), 255, dtype=np.uint8)
    rgb[4:12, 4:12] = (255, 0, 0)
    rgb[7:9, 7:9] = (255, 255, 255)
    rgb[2, 2] = (255, 255, 223)  # 32 from white: halfway up the 16..48 ramp

    rgba = matte_background(rgb)

    expected_alpha = np.zeros((16, 16), dtype=np.uint8)
    expected_alpha[4:12, 4:12] = 255
    expected_alpha[2, 2] = 128
    assert np.array_equal(rgba[..., 3], expected_alpha)
    assert np.array_equal(rgba[4:12, 4:12, :3], rgb[4:12, 4:12])
    # the soft pixel loses the background's share: (223 - 127) * 255 / 128 = 191.25
    assert tuple(rgba[2, 2, :3]) == (255, 255, 191)
