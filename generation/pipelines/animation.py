"""Sticker-to-animation generation with AnimateDiff video-to-video, keeping transparency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .image import call_pipeline, check_sticker_inputs, to_uint8
from .limits import MAX_FRAMES, MIN_FRAMES
from .loading import LoadedPipeline
from .matting import alpha_to_uint8, colour_distance, decontaminate, matte_alpha
from .motion import motion_score

# A frame pixel this close (RGB distance, 0-255 scale) to the composited source still shows
# the source sticker and reuses its exact alpha, with weight 1 at distance 0 falling linearly
# to 0 at this distance. A design choice, not a measurement: half of matting.MATTE_HIGH, the
# distance from which a colour counts as clearly different.
STILL_TOLERANCE = 24.0


@dataclass
class GeneratedAnimation:
    """One generated animation.

    Attributes:
        frames: ``num_frames`` RGBA images of ``width`` x ``height``.
        prompt: the prompt it was generated from.
        seed: the seed of its noise.
        inference_ms: wall time of the batched pipeline call divided by the batch size.
        motion_score: motion.motion_score(frames), in [0, 1].
    """

    frames: list[Image.Image]
    prompt: str
    seed: int
    inference_ms: float
    motion_score: float


def check_animation_inputs(
    *,
    source_images: Sequence[Image.Image],
    prompts: Sequence[str],
    seeds: Sequence[int],
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
    width: int,
    height: int,
    strength: float = 0.8,
) -> None:
    """Raise ValueError with an exact message unless the inputs make a valid request.

    On top of check_sticker_inputs' rules (prompts, seeds, steps in [1, 200], guidance in
    [0, 30], sizes positive multiples of 8): ``source_images`` holds one PIL image per
    prompt; ``num_frames`` is an integer in [2, 32]; ``strength`` is in (0, 1] and leaves at
    least one denoising step, i.e. ``int(num_inference_steps * strength) >= 1``.
    """
    check_sticker_inputs(
        prompts=prompts,
        seeds=seeds,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
    )
    if isinstance(source_images, Image.Image) or not isinstance(source_images, Sequence):
        raise ValueError("`source_images` has to be a list of PIL images.")
    if len(source_images) != len(prompts):
        raise ValueError(
            f"`source_images` and `prompts` have to have the same length but have "
            f"{len(source_images)} and {len(prompts)} items."
        )
    if not all(isinstance(image, Image.Image) for image in source_images):
        raise ValueError("`source_images` has to be a list of PIL images.")
    if (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, int | np.integer)
        or not MIN_FRAMES <= num_frames <= MAX_FRAMES
    ):
        raise ValueError(
            f"`num_frames` has to be an integer between {MIN_FRAMES} and {MAX_FRAMES} "
            f"but is {num_frames!r}."
        )
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float | np.integer | np.floating)
        or not 0.0 < strength <= 1.0
    ):
        raise ValueError(f"`strength` has to be in (0, 1] but is {strength!r}.")
    if int(num_inference_steps * strength) < 1:
        raise ValueError(
            f"`num_inference_steps` * `strength` has to leave at least one denoising step but "
            f"int({num_inference_steps} * {strength}) is 0."
        )


def prepare_source(
    image: Image.Image, *, size: tuple[int, int], background: tuple[int, int, int]
) -> tuple[Image.Image, np.ndarray]:
    """Return ``image`` resized to ``size`` as (RGB composite over ``background``, alpha).

    The composite is what the video pipeline sees; the (H, W) uint8 alpha is kept aside to
    restore transparency. Resizing uses Lanczos on RGBA, which Pillow performs on
    premultiplied colour, so edges get no dark fringe.
    """
    rgba = image.convert("RGBA")
    if rgba.size != size:
        rgba = rgba.resize(size, Image.Resampling.LANCZOS)
    base = Image.new("RGBA", size, (*background, 255))
    composite = Image.alpha_composite(base, rgba).convert("RGB")
    return composite, np.asarray(rgba.getchannel("A"))


def restore_transparency(
    frame: np.ndarray,
    *,
    source: np.ndarray,
    source_alpha: np.ndarray,
    background: tuple[int, int, int],
) -> np.ndarray:
    """Return an (H, W, 4) uint8 RGBA frame from an (H, W, 3) uint8 frame drawn over ``background``.

    Two alphas are blended per pixel:

    * where the frame still shows the source sticker (colour distance to the composited
      ``source`` below STILL_TOLERANCE, fading linearly), the source's own alpha, which keeps
      its soft edges and its background-coloured interior;
    * elsewhere (the sticker moved or changed), a matte against the known ``background``
      (matting.matte_alpha: ramp on colour distance, enclosed regions filled).

    Colour is then decontaminated against ``background``. A frame identical to ``source``
    therefore gets back exactly the source alpha.
    """
    bg = np.asarray(background, dtype=np.float64)
    matte = matte_alpha(frame, bg)
    still = np.clip(1.0 - colour_distance(frame, source) / STILL_TOLERANCE, 0.0, 1.0)
    alpha = still * (source_alpha.astype(np.float64) / 255.0) + (1.0 - still) * matte
    alpha_u8 = alpha_to_uint8(alpha)
    colour = decontaminate(frame, alpha_u8.astype(np.float64) / 255.0, bg)
    return np.dstack([colour, alpha_u8])


def _check_background(background: tuple[int, int, int]) -> tuple[int, int, int]:
    values = tuple(background)
    if len(values) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 255
        for v in values
    ):
        raise ValueError(
            f"`background` has to be three integers between 0 and 255 but is {background!r}."
        )
    return (int(values[0]), int(values[1]), int(values[2]))


def generate_animations(
    loaded: LoadedPipeline,
    *,
    source_images: list[Image.Image],
    prompts: list[str],
    seeds: list[int],
    num_frames: int = 8,
    num_inference_steps: int,
    guidance_scale: float,
    width: int,
    height: int,
    strength: float = 0.8,
    background: tuple[int, int, int] = (255, 255, 255),
) -> list[GeneratedAnimation]:
    """Animate each source sticker with its prompt; one pipeline call for the whole list.

    Video pipelines read RGB, and an RGBA input would be misread (SD-family img2img treats
    any 4-channel input as latents), so each sticker is composited over ``background``,
    repeated ``num_frames`` times as the input video of AnimateDiffVideoToVideoPipeline, and
    transparency is restored per output frame (see restore_transparency). Pick a background
    colour the sticker does not use; white suits most stickers.

    ``strength`` is diffusers' img2img strength: the input video is noised to the timestep
    ``strength`` of the way into the schedule and only the last
    ``int(num_inference_steps * strength)`` steps run (6 steps at 0.8 run 4 UNet passes).
    Lower keeps the animation closer to the still sticker.

    Item ``i`` uses a CPU generator seeded with ``seeds[i]`` (for its VAE sample and noise),
    so the same model, inputs and batch give identical frames on CPU. 8 frames at 64x64 with
    6 steps take about 0.25 s per item warm on the 2-core CPU.

    Raises:
        ValueError: invalid inputs (see check_animation_inputs), ``loaded`` is not an
            animation pipeline, ``num_frames`` exceeds the motion modules' maximum, or
            ``background`` is not an RGB triple.
    """
    if loaded.kind != "animation":
        raise ValueError(f"`loaded` has to be an animation pipeline but is {loaded.kind!r}.")
    check_animation_inputs(
        source_images=source_images,
        prompts=prompts,
        seeds=seeds,
        num_frames=num_frames,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        strength=strength,
    )
    max_frames = getattr(loaded.pipe.unet.config, "motion_max_seq_length", MAX_FRAMES)
    if num_frames > max_frames:
        raise ValueError(
            f"`num_frames` has to be at most {max_frames} for this model but is {num_frames}."
        )
    bg = _check_background(background)

    sources = [
        prepare_source(image, size=(width, height), background=bg) for image in source_images
    ]
    output, elapsed_ms = call_pipeline(
        loaded,
        prompts=prompts,
        seeds=seeds,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        video=[[composite] * num_frames for composite, _ in sources],
        strength=float(strength),
    )
    videos = to_uint8(output.frames)

    animations = []
    for prompt, seed, (composite, source_alpha), video in zip(
        prompts, seeds, sources, videos, strict=True
    ):
        source_rgb = np.asarray(composite)
        frames = [
            Image.fromarray(
                restore_transparency(
                    frame, source=source_rgb, source_alpha=source_alpha, background=bg
                )
            )
            for frame in video
        ]
        animations.append(
            GeneratedAnimation(
                frames=frames,
                prompt=prompt,
                seed=int(seed),
                inference_ms=elapsed_ms / len(prompts),
                motion_score=motion_score(frames),
            )
        )
    return animations
