"""Subject silhouettes and faces, drawn with Pillow around a centre and a radius.

Each shape function fills its silhouette on ``draw`` in ``fill`` and returns where a face goes,
as (x, y, radius), or None for subjects without one. Shapes draw only with the colours they
are given, so every rendered pixel traces back to a factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import ImageDraw

Fill = tuple[int, int, int, int]
FacePlace = tuple[float, float, float] | None
INK: Fill = (30, 25, 35, 255)


def _ellipse(draw: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, fill) -> None:
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)


def face(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx, cy, r, r, fill)
    return (cx, cy, r * 0.9)


def cat(draw, cx, cy, r, fill) -> FacePlace:
    head = r * 0.82
    hy = cy + r * 0.12
    for side in (-1, 1):
        draw.polygon(
            [
                (cx + side * head * 0.95, hy - head * 0.15),
                (cx + side * head * 0.75, hy - head * 1.35),
                (cx + side * head * 0.2, hy - head * 0.8),
            ],
            fill=fill,
        )
    _ellipse(draw, cx, hy, head, head * 0.9, fill)
    return (cx, hy + head * 0.05, head * 0.85)


def bear(draw, cx, cy, r, fill) -> FacePlace:
    head = r * 0.82
    hy = cy + r * 0.12
    for side in (-1, 1):
        _ellipse(draw, cx + side * head * 0.72, hy - head * 0.78, head * 0.36, head * 0.36, fill)
    _ellipse(draw, cx, hy, head, head, fill)
    return (cx, hy + head * 0.05, head * 0.85)


def frog(draw, cx, cy, r, fill) -> FacePlace:
    hy = cy + r * 0.15
    for side in (-1, 1):
        _ellipse(draw, cx + side * r * 0.5, hy - r * 0.55, r * 0.32, r * 0.32, fill)
    _ellipse(draw, cx, hy, r, r * 0.72, fill)
    return (cx, hy, r * 0.8)


def fish(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx - r * 0.15, cy, r * 0.78, r * 0.52, fill)
    draw.polygon(
        [(cx + r * 0.45, cy), (cx + r, cy - r * 0.5), (cx + r, cy + r * 0.5)],
        fill=fill,
    )
    _ellipse(draw, cx - r * 0.55, cy - r * 0.1, r * 0.09, r * 0.09, INK)
    return None


def bird(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx, cy + r * 0.1, r * 0.8, r * 0.75, fill)
    _ellipse(draw, cx - r * 0.05, cy - r * 0.55, r * 0.42, r * 0.42, fill)
    draw.polygon(
        [
            (cx - r * 0.4, cy - r * 0.6),
            (cx - r * 0.95, cy - r * 0.45),
            (cx - r * 0.4, cy - r * 0.38),
        ],
        fill=INK,
    )
    _ellipse(draw, cx - r * 0.15, cy - r * 0.62, r * 0.08, r * 0.08, INK)
    return None


def ghost(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx, cy - r * 0.25, r * 0.75, r * 0.75, fill)
    draw.rectangle((cx - r * 0.75, cy - r * 0.25, cx + r * 0.75, cy + r * 0.7), fill=fill)
    for i in range(3):
        x = cx - r * 0.5 + i * r * 0.5
        _ellipse(draw, x, cy + r * 0.7, r * 0.25, r * 0.25, fill)
    return (cx, cy - r * 0.15, r * 0.7)


def heart(draw, cx, cy, r, fill) -> FacePlace:
    lobe = r * 0.52
    for side in (-1, 1):
        _ellipse(draw, cx + side * lobe * 0.9, cy - r * 0.3, lobe, lobe, fill)
    draw.polygon(
        [(cx - r * 0.97, cy - r * 0.15), (cx + r * 0.97, cy - r * 0.15), (cx, cy + r * 0.95)],
        fill=fill,
    )
    return None


def star(draw, cx, cy, r, fill) -> FacePlace:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=fill)
    return None


def sun(draw, cx, cy, r, fill) -> FacePlace:
    for i in range(8):
        angle = i * math.pi / 4
        tip = (cx + r * math.cos(angle), cy + r * math.sin(angle))
        left = (cx + r * 0.6 * math.cos(angle - 0.3), cy + r * 0.6 * math.sin(angle - 0.3))
        right = (cx + r * 0.6 * math.cos(angle + 0.3), cy + r * 0.6 * math.sin(angle + 0.3))
        draw.polygon([tip, left, right], fill=fill)
    _ellipse(draw, cx, cy, r * 0.62, r * 0.62, fill)
    return (cx, cy, r * 0.55)


def cloud(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx - r * 0.5, cy + r * 0.1, r * 0.45, r * 0.4, fill)
    _ellipse(draw, cx + r * 0.5, cy + r * 0.1, r * 0.45, r * 0.4, fill)
    _ellipse(draw, cx, cy - r * 0.15, r * 0.58, r * 0.55, fill)
    draw.rectangle((cx - r * 0.5, cy + r * 0.1, cx + r * 0.5, cy + r * 0.5), fill=fill)
    return (cx, cy + r * 0.05, r * 0.5)


def cup(draw, cx, cy, r, fill) -> FacePlace:
    draw.polygon(
        [
            (cx - r * 0.7, cy - r * 0.6),
            (cx + r * 0.5, cy - r * 0.6),
            (cx + r * 0.35, cy + r * 0.75),
            (cx - r * 0.55, cy + r * 0.75),
        ],
        fill=fill,
    )
    draw.ellipse(
        (cx + r * 0.25, cy - r * 0.35, cx + r * 0.95, cy + r * 0.35),
        outline=fill,
        width=max(2, int(r * 0.18)),
    )
    return None


def flower(draw, cx, cy, r, fill) -> FacePlace:
    for i in range(5):
        angle = -math.pi / 2 + i * 2 * math.pi / 5
        _ellipse(
            draw,
            cx + r * 0.55 * math.cos(angle),
            cy + r * 0.55 * math.sin(angle),
            r * 0.42,
            r * 0.42,
            fill,
        )
    _ellipse(draw, cx, cy, r * 0.3, r * 0.3, (250, 235, 120, 255))
    return None


def moon(draw, cx, cy, r, fill) -> FacePlace:
    _ellipse(draw, cx, cy, r * 0.9, r * 0.9, fill)
    # The bite is drawn transparent, so the crescent keeps a real hole in its silhouette.
    _ellipse(draw, cx + r * 0.45, cy - r * 0.2, r * 0.7, r * 0.7, (0, 0, 0, 0))
    return None


SHAPES: dict[str, Callable[..., FacePlace]] = {
    fn.__name__: fn
    for fn in (face, cat, bear, frog, fish, bird, ghost, heart, star, sun, cloud, cup, flower, moon)
}


def draw_face(draw, x: float, y: float, r: float, expression: str, *, eyes_closed: bool) -> None:
    """Draw eyes and mouth for ``expression`` in a face of radius ``r`` centred at (x, y)."""
    line = max(2, int(r * 0.09))
    eye_dx, eye_y, eye_r = r * 0.36, y - r * 0.18, r * 0.11
    for side in (-1, 1):
        ex = x + side * eye_dx
        if eyes_closed or expression == "sleepy":
            draw.arc(
                (ex - eye_r * 1.4, eye_y - eye_r, ex + eye_r * 1.4, eye_y + eye_r),
                0,
                180,
                fill=INK,
                width=line,
            )
        elif expression == "surprised":
            _ellipse(draw, ex, eye_y, eye_r * 1.5, eye_r * 1.5, INK)
        else:
            _ellipse(draw, ex, eye_y, eye_r, eye_r * 1.2, INK)
        if expression == "angry":
            inner = x + side * r * 0.15
            outer = x + side * r * 0.6
            draw.line([(outer, eye_y - r * 0.33), (inner, eye_y - r * 0.18)], fill=INK, width=line)
    mouth_y = y + r * 0.35
    w = r * 0.42
    if expression == "happy":
        draw.arc(
            (x - w, mouth_y - w * 0.9, x + w, mouth_y + w * 0.5), 20, 160, fill=INK, width=line
        )
    elif expression == "sad":
        draw.arc((x - w, mouth_y, x + w, mouth_y + w * 1.2), 200, 340, fill=INK, width=line)
    elif expression == "surprised":
        _ellipse(draw, x, mouth_y + r * 0.05, r * 0.16, r * 0.2, INK)
    elif expression == "angry":
        draw.line(
            [(x - w * 0.8, mouth_y + r * 0.1), (x + w * 0.8, mouth_y + r * 0.1)],
            fill=INK,
            width=line,
        )
    else:
        _ellipse(draw, x, mouth_y + r * 0.05, r * 0.08, r * 0.06, INK)
