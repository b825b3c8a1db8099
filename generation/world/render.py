"""Render stickers and 8-frame sticker animations from a ``StickerSpec``, deterministically.

Drawing happens at twice the output size and is downsampled (Lanczos, premultiplied alpha), so
edges are anti-aliased. The same spec and motion always give the same pixels: every random
choice (size and colour jitter, texture, grain) comes from ``spec.seed``.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import factors, motions, shapes
from .factors import STYLE_PARTS, WorldError, check_choice

SCALE = 2  # supersampling factor
OUTLINE_WHITE = 3  # pixels at output size
BACKGROUND_LOW, BACKGROUND_HIGH = 110, 245
CROP_SHARE = (0.15, 0.3)  # of the subject's size, past the edge of a cropped sticker


@dataclass(frozen=True)
class StickerSpec:
    """Every factor of one sticker. ``seed`` drives only nuisance variation (jitter, texture)."""

    subject: str
    colour: str
    expression: str | None = None
    background: str = "transparent"
    outline: str = "white"
    finish: str = "flat"
    placement: str = "centred"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("subject", self.subject, factors.SUBJECT_NAMES)
        check_choice("colour", self.colour, factors.COLOUR_NAMES)
        if factors.SUBJECT_BY_NAME[self.subject].has_face:
            check_choice("expression", self.expression, factors.EXPRESSION_NAMES)
        elif self.expression is not None:
            raise WorldError(
                "expression",
                f"`expression` has to be None for a {self.subject}, which has no face.",
            )
        for part, values in STYLE_PARTS.items():
            check_choice(part, getattr(self, part), values)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise WorldError(
                "seed", f"`seed` has to be a non-negative integer but is {self.seed!r}."
            )

    @property
    def in_style(self) -> bool:
        return all(getattr(self, part) == value for part, value in factors.IN_STYLE.items())

    def truth(self) -> dict:
        """The ground truth of every factor, as stored beside a rendered image."""
        out = asdict(self)
        out.pop("seed")
        out["sticker_style"] = self.in_style
        return out


def _subject_layer(spec: StickerSpec, canvas: int, *, eyes_closed: bool) -> Image.Image:
    """The subject with its outline and finish, centred on a transparent ``canvas`` square."""
    rng = random.Random(spec.seed)
    radius = canvas * rng.uniform(0.25, 0.29)
    jitter = [rng.randint(-10, 10) for _ in range(3)]
    rgb = tuple(
        min(255, max(0, c + j))
        for c, j in zip(factors.COLOUR_BY_NAME[spec.colour].rgb, jitter, strict=True)
    )
    body = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(body)
    subject = factors.SUBJECT_BY_NAME[spec.subject]
    centre = canvas / 2
    place = shapes.SHAPES[subject.shape](draw, centre, centre, radius, (*rgb, 255))
    silhouette = body.getchannel("A")
    if place is not None:
        shapes.draw_face(draw, *place, spec.expression, eyes_closed=eyes_closed)
    body = _finish(body, spec, rng)
    return _outline(body, silhouette, spec.outline)


def _finish(body: Image.Image, spec: StickerSpec, rng: random.Random) -> Image.Image:
    if spec.finish == "flat":
        return body
    pixels = np.asarray(body).astype(np.float32)
    size = body.width
    if spec.finish == "shaded":
        # Light from the top left: a smooth ramp from 1.3x to 0.55x brightness.
        ys, xs = np.mgrid[0:size, 0:size] / size
        ramp = 1.3 - 0.75 * (xs + ys) / 2
        pixels[..., :3] *= ramp[..., None]
    else:
        grain = np.random.default_rng(rng.randrange(2**32)).normal(0, 38, (size, size, 1))
        pixels[..., :3] += grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGBA")


def _outline(body: Image.Image, silhouette: Image.Image, outline: str) -> Image.Image:
    if outline == "none":
        return body
    if outline == "white":
        width, colour = OUTLINE_WHITE * SCALE, (255, 255, 255, 255)
    else:
        width, colour = SCALE, shapes.INK
    grown = silhouette.point(lambda a: 255 if a > 127 else 0)
    # Each 3x3 max filter grows the silhouette by one pixel.
    for _ in range(width):
        grown = grown.filter(ImageFilter.MaxFilter(3))
    layer = Image.new("RGBA", body.size, (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", body.size, colour), mask=grown)
    layer.alpha_composite(body)
    return layer


def _background(spec: StickerSpec, canvas: int) -> Image.Image | None:
    if spec.background == "transparent":
        return None
    rng = random.Random(spec.seed * 7919 + 1)

    def tone() -> tuple[int, int, int, int]:
        return (*(rng.randint(BACKGROUND_LOW, BACKGROUND_HIGH) for _ in range(3)), 255)

    if spec.background == "opaque":
        return Image.new("RGBA", (canvas, canvas), tone())
    first, second = tone(), tone()
    image = Image.new("RGBA", (canvas, canvas), first)
    draw = ImageDraw.Draw(image)
    pattern = rng.choice(("stripes", "checks", "dots", "grain"))
    step = rng.randint(6, 12) * SCALE
    if pattern == "stripes":
        for offset in range(-canvas, canvas, step):
            draw.line([(offset, 0), (offset + canvas, canvas)], fill=second, width=step // 2)
    elif pattern == "checks":
        for y in range(0, canvas, step):
            for x in range((y // step) % 2 * step, canvas, 2 * step):
                draw.rectangle((x, y, x + step - 1, y + step - 1), fill=second)
    elif pattern == "dots":
        for y in range(step // 2, canvas, step):
            for x in range(step // 2, canvas, step):
                draw.ellipse((x - step / 4, y - step / 4, x + step / 4, y + step / 4), fill=second)
    else:
        noise = np.random.default_rng(rng.randrange(2**32)).integers(
            BACKGROUND_LOW, BACKGROUND_HIGH, (canvas // 4, canvas // 4, 3), dtype=np.uint8
        )
        image = Image.fromarray(noise, "RGB").resize((canvas, canvas), Image.Resampling.NEAREST)
        image = image.convert("RGBA")
    return image


def _placement(spec: StickerSpec, canvas: int, layer: Image.Image) -> tuple[float, float, float]:
    """(scale, dx, dy) in canvas pixels that put the subject where ``placement`` says."""
    rng = random.Random(spec.seed * 104729 + 2)
    angle = rng.uniform(0, 2 * math.pi)
    if spec.placement == "centred":
        scale, shift = rng.uniform(0.95, 1.05), rng.uniform(0, 1.5)
    elif spec.placement == "offcentre":
        scale, shift = rng.uniform(0.62, 0.7), rng.uniform(10, 12)
    else:
        return _cropped(rng, canvas, layer, side=int(angle // (math.pi / 2)) % 4)
    return scale, shift * SCALE * math.cos(angle), shift * SCALE * math.sin(angle)


def _cropped(
    rng: random.Random, canvas: int, layer: Image.Image, *, side: int
) -> tuple[float, float, float]:
    """A scale and shift that push CROP_SHARE of the subject's extent past one edge.

    A fixed shift in a random direction left narrow shapes (a cup, a fish) whole when it
    pointed at a corner or along their short side (about 1.5 % of "cropped" stickers touched no
    edge at all); measuring the silhouette's bounding box crops every shape by the same share.
    ``side`` is 0 right, 1 bottom, 2 left, 3 top.
    """
    scale = rng.uniform(1.55, 1.8)
    share = rng.uniform(*CROP_SHARE)
    along = rng.uniform(-4, 4) * SCALE
    left, top, right, bottom = layer.getchannel("A").getbbox() or (0, 0, canvas, canvas)
    centre = canvas / 2
    # Extent of the scaled subject from its centre towards the edge, and its full size.
    reach = scale * (right - centre, bottom - centre, centre - left, centre - top)[side]
    size = scale * (right - left if side % 2 == 0 else bottom - top)
    shift = centre + share * size - reach
    dx, dy = ((shift, along), (along, shift), (-shift, along), (along, -shift))[side]
    return scale, dx, dy


def _compose(layer, background, canvas, transform: motions.Transform, place) -> Image.Image:
    place_scale, place_dx, place_dy = place
    centre = canvas / 2
    scale = place_scale * transform.scale
    theta = math.radians(transform.angle)
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    # The motion pivots about a point of the subject (its centre, or its base for a wave).
    px, py = centre, centre + transform.pivot_y * canvas
    tx = centre + place_dx + (px - centre) * place_scale + transform.dx * SCALE
    ty = centre + place_dy + (py - centre) * place_scale + transform.dy * SCALE
    # Forward map: out = T + M (in - P); Image.transform wants the inverse, out -> in.
    det = cos * cos + sin * sin
    inverse = (cos / det, sin / det, -sin / det, cos / det)
    a, b, d, e = inverse
    coefficients = (a, b, px - a * tx - b * ty, d, e, py - d * tx - e * ty)
    moved = layer.convert("RGBa").transform(
        (canvas, canvas), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC
    )
    moved = moved.convert("RGBA")
    if transform.flash:
        white = Image.new("RGBA", moved.size, (255, 255, 255, 0))
        flashed = Image.blend(moved, white, transform.flash)
        flashed.putalpha(moved.getchannel("A"))
        moved = flashed
    if background is None:
        frame = moved
    else:
        frame = background.copy()
        frame.alpha_composite(moved)
    return frame.resize((factors.SIZE, factors.SIZE), Image.Resampling.LANCZOS)


def render_sticker(spec: StickerSpec) -> Image.Image:
    """A 64x64 RGBA sticker."""
    return render_animation(spec, factors.STILL, frames=1)[0]


def render_animation(
    spec: StickerSpec, motion: str, *, smoothness: str = "smooth", frames: int = factors.FRAMES
) -> list[Image.Image]:
    """``frames`` 64x64 RGBA frames of the sticker doing ``motion`` (or standing ``still``)."""
    check_choice("motion", motion, (*factors.MOTION_NAMES, factors.STILL))
    check_choice("smoothness", smoothness, factors.SMOOTHNESS)
    if not isinstance(frames, int) or not 1 <= frames <= 32:
        raise WorldError("frames", f"`frames` has to be an integer in [1, 32] but is {frames!r}.")
    canvas = factors.SIZE * SCALE
    layer = _subject_layer(spec, canvas, eyes_closed=False)
    closed = None
    background = _background(spec, canvas)
    place = _placement(spec, canvas, layer)
    has_face = factors.SUBJECT_BY_NAME[spec.subject].has_face
    out = []
    for transform in motions.transforms(
        motion, frames, smoothness, seed=spec.seed, has_face=has_face
    ):
        current = layer
        if transform.eyes_closed:
            if closed is None:
                closed = _subject_layer(spec, canvas, eyes_closed=True)
            current = closed
        out.append(_compose(current, background, canvas, transform, place))
    return out
