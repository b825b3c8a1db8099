"""Turning a sticker on a plain background into a transparent sticker.

Used for image models whose VAE decodes only RGB, and for animation frames, which the video
pipeline produces over a known background colour. All functions are pure numpy and exact:
the same pixels always give the same alpha.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# RGB distances on the 0-255 scale (Euclidean; black to white is 441.7). A pixel at most
# MATTE_LOW from the background is fully transparent, one at least MATTE_HIGH away is fully
# opaque, and alpha ramps linearly in between, which keeps anti-aliased edges soft. 16 sits
# above the colour noise the tiny VAEs leave on flat backgrounds; 48 is about where a human
# sees a clearly different colour.
MATTE_LOW = 16.0
MATTE_HIGH = 48.0


def border_width(height: int, width: int) -> int:
    """Width in pixels of the border ring used to estimate the background (2 px at 64x64)."""
    return max(1, min(height, width) // 32)


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Return the background colour of an (H, W, 3) uint8 image as 3 floats on 0-255.

    The per-channel median of the border ring: stickers sit centred on a plain background,
    and the median ignores the part of a sticker that touches the edge.
    """
    ring = border_width(rgb.shape[0], rgb.shape[1])
    mask = np.ones(rgb.shape[:2], dtype=bool)
    mask[ring:-ring, ring:-ring] = False
    return np.median(rgb[mask].astype(np.float64), axis=0)


def colour_distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of an (H, W, 3) image to ``colour`` (broadcastable)."""
    diff = rgb.astype(np.float64) - np.asarray(colour, dtype=np.float64)
    return np.sqrt((diff**2).sum(axis=-1))


def matte_alpha(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Return alpha in [0, 1] (float64, (H, W)) for an (H, W, 3) image over ``background``.

    Alpha ramps from 0 at distance MATTE_LOW to 1 at MATTE_HIGH. Background-coloured regions
    that the sticker encloses (white eyes on a white background) are not connected to the
    image border through background pixels, so they are filled in as opaque.
    """
    distance = colour_distance(rgb, background)
    alpha = np.clip((distance - MATTE_LOW) / (MATTE_HIGH - MATTE_LOW), 0.0, 1.0)
    foreground = alpha > 0.0
    enclosed = ndimage.binary_fill_holes(foreground) & ~foreground
    alpha[enclosed] = 1.0
    return alpha


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Remove the background's share from semi-transparent pixels; return (H, W, 3) uint8.

    A pixel seen as ``a * colour + (1 - a) * background`` gets back ``colour``, so soft edges
    do not keep a halo of the old background when shown on another one. Pixels with alpha 0
    or 1 are returned unchanged.
    """
    rgb_f = rgb.astype(np.float64)
    a = alpha[..., None]
    partial = (a > 0.0) & (a < 1.0)
    safe_a = np.where(partial, a, 1.0)
    bg = np.asarray(background, dtype=np.float64)
    unmixed = (rgb_f - (1.0 - safe_a) * bg) / safe_a
    out = np.where(partial, unmixed, rgb_f)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """Round alpha in [0, 1] to uint8 0-255."""
    return np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)


def matte_background(rgb: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Return an (H, W, 4) uint8 RGBA sticker from an (H, W, 3) uint8 image on a plain colour.

    ``background`` is the known background colour (0-255 per channel); when None it is
    estimated from the border ring.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"`rgb` has to be an (H, W, 3) uint8 array but is {rgb.dtype} {rgb.shape}."
        )
    bg = estimate_background(rgb) if background is None else np.asarray(background, np.float64)
    alpha = alpha_to_uint8(matte_alpha(rgb, bg))
    # Unmix with the stored (rounded) alpha, so that compositing the result reproduces the
    # input as closely as 8-bit alpha allows.
    colour = decontaminate(rgb, alpha.astype(np.float64) / 255.0, bg)
    return np.dstack([colour, alpha])
