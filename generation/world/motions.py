"""Per-frame transforms of each motion: a loop of ``frames`` frames starting at rest.

Amplitudes are in output pixels (64x64 frames) and degrees. A jerky clip keeps its motion type
but stutters (one frame held, the next step skipped) and jitters the subject, as badly sampled
weak video does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .factors import STILL


@dataclass(frozen=True)
class Transform:
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0  # degrees, counter-clockwise
    scale: float = 1.0
    pivot_y: float = 0.0  # pivot below the subject's centre, as a fraction of the canvas
    eyes_closed: bool = False
    flash: float = 0.0  # blend towards white, for subjects that twinkle instead of blinking


def _at(motion: str, phase: float, *, has_face: bool) -> Transform:
    """The transform of ``motion`` at ``phase`` in [0, 1) of its loop."""
    wave = math.sin(2 * math.pi * phase)
    if motion == "bounce":
        return Transform(dy=-8 * abs(math.sin(math.pi * phase)))
    if motion == "spin":
        return Transform(angle=360 * phase)
    if motion == "pulse":
        return Transform(scale=1 + 0.2 * wave)
    if motion == "shake":
        return Transform(dx=4 * math.sin(4 * math.pi * phase))
    if motion == "wave":
        return Transform(angle=22 * wave, pivot_y=0.22)
    if motion == "blink":
        shut = 0.3 <= phase < 0.55
        if has_face:
            return Transform(eyes_closed=shut)
        return Transform(flash=0.55 if shut else 0.0)
    return Transform()


def transforms(
    motion: str, frames: int, smoothness: str, *, seed: int, has_face: bool
) -> list[Transform]:
    phases = [index / frames for index in range(frames)]
    if smoothness == "smooth" or motion == STILL and frames == 1:
        return [_at(motion, phase, has_face=has_face) for phase in phases]
    rng = random.Random(seed * 7 + 3)
    # One frame held where the next should be (a stutter), so the loop skips a step, and every
    # frame jittered by up to 3 pixels. Every other phase stays, so the motion keeps what makes
    # it that motion (a blink keeps a shut frame, a spin most of its turn): a jerky clip is a
    # bad clip of its motion, never a different motion.
    if frames > 2:
        held = rng.randrange(1, frames - 1)
        phases[held] = phases[held - 1]
    out = []
    for phase in phases:
        base = _at(motion, phase, has_face=has_face)
        out.append(
            Transform(
                dx=base.dx + rng.uniform(-3, 3),
                dy=base.dy + rng.uniform(-3, 3),
                angle=base.angle,
                scale=base.scale,
                pivot_y=base.pivot_y,
                eyes_closed=base.eyes_closed,
                flash=base.flash,
            )
        )
    return out
