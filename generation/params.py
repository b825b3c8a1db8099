"""Inference parameters of a batch: defaults from the model version, ranges checked up front."""

from dataclasses import asdict, dataclass

from django.core.exceptions import ValidationError

from generation.models import BatchKind
from generation.pipelines.limits import (
    MAX_FRAMES,
    MAX_GUIDANCE_SCALE,
    MAX_INFERENCE_STEPS,
    MIN_FRAMES,
    MIN_GUIDANCE_SCALE,
    MIN_INFERENCE_STEPS,
    SIZE_MULTIPLE,
)

# Narrower than the pipelines accept: sizes a sticker needs, a frame rate chat apps play, and a
# strength that changes the source visibly (the pipelines take any size, 60 fps and (0, 1]).
MIN_SIZE, MAX_SIZE = 64, 1024
MAX_FPS = 30
MIN_STRENGTH = 0.05


@dataclass(frozen=True)
class GenerationParams:
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    negative_prompt: str = ""
    num_frames: int | None = None
    fps: int | None = None
    strength: float | None = None
    motion_prompt: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


_RANGES = {
    "num_inference_steps": (int, MIN_INFERENCE_STEPS, MAX_INFERENCE_STEPS),
    "guidance_scale": (float, MIN_GUIDANCE_SCALE, MAX_GUIDANCE_SCALE),
    "width": (int, MIN_SIZE, MAX_SIZE),
    "height": (int, MIN_SIZE, MAX_SIZE),
    "num_frames": (int, MIN_FRAMES, MAX_FRAMES),
    "fps": (int, 1, MAX_FPS),
    "strength": (float, MIN_STRENGTH, 1.0),
}
_STICKER_FIELDS = {"num_inference_steps", "guidance_scale", "width", "height", "negative_prompt"}
_ANIMATION_FIELDS = _STICKER_FIELDS | {"num_frames", "fps", "strength", "motion_prompt"}
_FALLBACKS = {
    "num_inference_steps": 8,
    "guidance_scale": 5.0,
    "width": 64,
    "height": 64,
    "num_frames": 8,
    "fps": 8,
    "strength": 0.8,
}


def validate_params(params: dict, *, kind: str, defaults: dict) -> GenerationParams:
    """Merge ``params`` over the model's ``defaults`` and check every value's type and range.

    Raises ValidationError keyed ``params.<name>`` so the API answer names the field. The model's
    ``default_params`` may narrow the size range with ``min_size`` / ``max_size``.
    """
    if not isinstance(params, dict):
        raise ValidationError({"params": ["Must be an object."]})
    allowed = _STICKER_FIELDS if kind == BatchKind.STICKER else _ANIMATION_FIELDS
    errors: dict[str, list[str]] = {}
    for name in sorted(set(params) - allowed):
        errors[f"params.{name}"] = [f"Unknown parameter for a {kind} batch."]
    merged = {}
    for name in allowed:
        value = params.get(name, defaults.get(name, _FALLBACKS.get(name, "")))
        if name in ("negative_prompt", "motion_prompt"):
            if not isinstance(value, str) or len(value) > 1000:
                errors[f"params.{name}"] = ["Must be text of at most 1000 characters."]
            merged[name] = value
            continue
        cast, low, high = _RANGES[name]
        if name in ("width", "height"):
            low = int(defaults.get("min_size", low))
            high = int(defaults.get("max_size", high))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (cast is int and not float(value).is_integer())
        ):
            errors[f"params.{name}"] = [f"Must be {'an integer' if cast is int else 'a number'}."]
            continue
        value = cast(value)
        if not low <= value <= high:
            errors[f"params.{name}"] = [f"Must be between {low} and {high}, not {value}."]
        elif name in ("width", "height") and value % SIZE_MULTIPLE:
            errors[f"params.{name}"] = [f"Must be divisible by {SIZE_MULTIPLE}, not {value}."]
        merged[name] = value
    if (
        not errors
        and "strength" in merged
        and int(merged["num_inference_steps"] * merged["strength"]) < 1
    ):
        # Video-to-video runs int(steps × strength) denoising steps; zero would change nothing.
        errors["params.strength"] = [
            f"With {merged['num_inference_steps']} steps, strength {merged['strength']} leaves no "
            "denoising step; raise either."
        ]
    if errors:
        raise ValidationError(errors)
    return GenerationParams(**merged)
