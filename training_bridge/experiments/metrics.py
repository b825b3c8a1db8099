"""The statistics of an experiment's axes, Django-free: plain numbers and arrays in, numbers out.

- ``wilson_interval``: the 95% Wilson score interval of a pass rate (k passes of n).
- ``bootstrap_mean_interval``: the percentile bootstrap 95% interval of a mean.
- ``pixel_embedding`` and ``mean_pairwise_distance``: scene diversity. The embedding is fixed and
  owes nothing to the models compared (no learned encoder that one arm's training could have
  seen): the sticker as RGBA, alpha-premultiplied so that a transparent pixel's colour does not
  count, box-averaged down to 16 x 16 and read as 1,024 numbers in [0, 1]. Two samples' distance
  is the root-mean-square difference of their embeddings, also in [0, 1]: 0 for the same
  picture, about 0.1 for the same subject moved or recoloured a little, 0.3 and more for
  different scenes.

Win rates with intervals come from ``annotation.quality.aggregation.bradley_terry``, the
project's one Bradley–Terry fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from PIL import Image

# The 97.5th percentile of the standard normal distribution (scipy.stats.norm.ppf(0.975)).
Z_95 = 1.959963984540054
EMBEDDING_SIDE = 16
BOOTSTRAP_SAMPLES = 1000


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n``; (0, 1) when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n
    successes, which small arms hit often."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n, not {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean_interval(
    values: Sequence[float], *, seed: int, n_bootstrap: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles (numpy's linear interpolation) of the mean of
    ``values`` resampled with replacement, ``n_bootstrap`` times from ``default_rng(seed)``."""
    data = np.asarray(values, dtype=np.float64)
    if not len(data):
        raise ValueError("values must not be empty")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_bootstrap, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def pixel_embedding(image: Image.Image) -> np.ndarray:
    """The sticker as 16 x 16 x 4 alpha-premultiplied RGBA in [0, 1], flattened (1,024 values).

    Premultiplied before averaging, so that the box filter mixes only what is visible. Each
    channel is averaged as a float image: Pillow's RGBA resize premultiplies and divides again
    on its own, rounding to 8 bits on the way."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
    rgba[..., :3] *= rgba[..., 3:4]
    side = (EMBEDDING_SIDE, EMBEDDING_SIDE)
    channels = [
        np.asarray(
            Image.fromarray(rgba[..., c].astype(np.float32), mode="F").resize(
                side, Image.Resampling.BOX
            ),
            dtype=np.float64,
        )
        for c in range(4)
    ]
    return np.stack(channels, axis=-1).reshape(-1)


def mean_pairwise_distance(embeddings: Sequence[np.ndarray]) -> float:
    """The mean root-mean-square difference over every pair of ``embeddings`` (at least two)."""
    if len(embeddings) < 2:
        raise ValueError("at least two embeddings are needed")
    distances = [float(np.sqrt(np.mean((a - b) ** 2))) for a, b in combinations(embeddings, 2)]
    return float(np.mean(distances))
