"""A single number for how much an animation moves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def frame_to_premultiplied_rgb(frame: Image.Image | np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) float64 array on 0-255 of the frame's visible colour.

    RGB frames are taken as they are. Frames with alpha are composited over black, i.e. each
    colour channel is multiplied by alpha / 255: a fully transparent pixel counts as black
    whatever colour it stores, and a pixel fading in or out counts as changing colour.

    Accepts PIL images of any mode, and uint8 arrays on 0-255 or float arrays on [0, 1] (the
    pipelines' ``output_type="np"``), shaped (H, W, 3) or (H, W, 4).
    """
    if isinstance(frame, Image.Image):
        has_alpha = frame.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            frame.mode == "P" and "transparency" in frame.info
        )
        array = np.asarray(frame.convert("RGBA" if has_alpha else "RGB"), dtype=np.float64)
    else:
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(
                f"frames have to be (H, W, 3) or (H, W, 4) arrays but one is {array.shape}."
            )
        if array.dtype == np.uint8:
            array = array.astype(np.float64)
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64) * 255.0
        else:
            raise ValueError(f"frame arrays have to be uint8 or floating but one is {array.dtype}.")
    if array.shape[2] == 4:
        return array[..., :3] * (array[..., 3:4] / 255.0)
    return array


def motion_score(frames: Sequence[Image.Image | np.ndarray]) -> float:
    """Mean absolute change between consecutive frames, scaled to [0, 1].

    With ``c_t`` the premultiplied RGB of frame t on 0-255 (see frame_to_premultiplied_rgb)
    and N = H * W * 3 values per frame::

        motion_score = sum_{t=1}^{T-1} sum |c_t - c_{t-1}| / (255 * N * (T - 1))

    0.0 means every frame equals the one before; 1.0 means every value jumps between 0 and 255
    on every step. A single frame scores 0.0.

    Raises:
        ValueError: no frames, or frames of different sizes or unsupported types.
    """
    if len(frames) == 0:
        raise ValueError("`frames` has to contain at least one frame.")
    colours = [frame_to_premultiplied_rgb(frame) for frame in frames]
    shapes = {colour.shape for colour in colours}
    if len(shapes) != 1:
        raise ValueError(f"frames have to share one size but have shapes {sorted(shapes)}.")
    if len(colours) == 1:
        return 0.0
    stack = np.stack(colours)
    total = np.abs(np.diff(stack, axis=0)).sum()
    return float(total / (255.0 * stack[0].size * (len(colours) - 1)))
