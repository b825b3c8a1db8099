"""The experiment statistics' own functions, against independent values."""

import math

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from tests.experiments.conftest import GREEN, RED, flat, half_red
from training_bridge.experiments import metrics


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 7), (3, 5), (7, 7), (41, 120)])
def test_wilson_intervals_match_scipy(k, n):
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert metrics.wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_without_units_is_the_whole_range_and_bad_counts_are_refused():
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes must be between 0 and n, not 3 of 2"):
        metrics.wilson_interval(3, 2)


def test_the_embedding_premultiplies_alpha_and_averages_boxes():
    red = metrics.pixel_embedding(flat(RED)).reshape(16, 16, 4)
    assert red.shape == (16, 16, 4) and np.all(red == [1.0, 0.0, 0.0, 1.0])
    # A transparent pixel counts as nothing, whatever colour it holds.
    hidden = metrics.pixel_embedding(flat((0, 255, 0, 0)))
    assert np.all(hidden == 0.0)
    half = metrics.pixel_embedding(half_red()).reshape(16, 16, 4)
    assert np.all(half[:, :8] == [1.0, 0.0, 0.0, 1.0]) and np.all(half[:, 8:] == 0.0)
    # A 2-pixel-wide red stripe in each 4-pixel box averages to half red, half opaque.
    stripes = np.zeros((64, 64, 4), dtype=np.uint8)
    stripes[:, 0::4] = RED
    stripes[:, 1::4] = RED
    boxes = metrics.pixel_embedding(Image.fromarray(stripes, mode="RGBA")).reshape(16, 16, 4)
    assert np.allclose(boxes, [0.5, 0.0, 0.0, 0.5])


def test_distances_are_root_mean_square_differences():
    red, green, half = (metrics.pixel_embedding(i) for i in (flat(RED), flat(GREEN), half_red()))
    assert metrics.mean_pairwise_distance([red, green]) == pytest.approx(math.sqrt(0.5))
    assert metrics.mean_pairwise_distance([red, half]) == pytest.approx(0.5)
    assert metrics.mean_pairwise_distance([red, red]) == 0.0
    # Three samples: the mean of the three pairs (green and half red differ everywhere by one
    # channel in two of four: sqrt(0.5)).
    assert metrics.mean_pairwise_distance([red, green, half]) == pytest.approx(
        (math.sqrt(0.5) + 0.5 + math.sqrt(0.5)) / 3
    )
    with pytest.raises(ValueError, match="at least two embeddings are needed"):
        metrics.mean_pairwise_distance([red])


def test_the_bootstrap_of_one_repeated_value_is_that_value():
    assert metrics.bootstrap_mean_interval([4.0, 4.0, 4.0], seed=1) == (4.0, 4.0)
    with pytest.raises(ValueError, match="values must not be empty"):
        metrics.bootstrap_mean_interval([], seed=1)
