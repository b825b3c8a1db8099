import numpy as np
import pytest
from PIL import Image

from generation.pipelines import motion_score


def test_identical_frames_score_zero():
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8))

    assert motion_score([frame, frame.copy(), frame.copy()]) == 0.0


def test_single_frame_scores_zero():
    assert motion_score([np.zeros((2, 2, 3), dtype=np.uint8)]) == 0.0


def test_one_pixel_turning_red_matches_hand_computed_value():
    # given: 2x2 RGB frames, 12 values; one value moves by 255 between the two frames
    first = np.zeros((2, 2, 3), dtype=np.uint8)
    second = first.copy()
    second[0, 0] = (255, 0, 0)

    # then: 255 / (255 * 12 * 1) = 1/12
    assert motion_score([first, second]) == 1 / 12
    # A, B, A: both steps change the same amount, so the mean is unchanged
    assert motion_score([first, second, first]) == 1 / 12


def test_float_frames_match_uint8_frames():
    first = np.zeros((2, 2, 3), dtype=np.float32)
    second = first.copy()
    second[0, 0] = (1.0, 0.0, 0.0)

    assert motion_score([first, second]) == 1 / 12


def test_rgba_frames_are_premultiplied_so_fading_out_counts_as_change():
    opaque_white = Image.new("RGBA", (1, 1), (255, 255, 255, 255))
    transparent_white = Image.new("RGBA", (1, 1), (255, 255, 255, 0))
    transparent_red = Image.new("RGBA", (1, 1), (255, 0, 0, 0))

    assert motion_score([opaque_white, transparent_white]) == 1.0
    # the colour stored under alpha 0 is invisible and does not count
    assert motion_score([transparent_white, transparent_red]) == 0.0


def test_no_frames_is_an_error():
    with pytest.raises(ValueError) as excinfo:
        motion_score([])

    assert str(excinfo.value) == "`frames` has to contain at least one frame."


def test_frames_of_different_sizes_are_an_error():
    with pytest.raises(ValueError) as excinfo:
        motion_score([np.zeros((2, 2, 3), np.uint8), np.zeros((4, 2, 3), np.uint8)])

    assert (
        str(excinfo.value)
        == "frames have to share one size but have shapes [(2, 2, 3), (4, 2, 3)]."
    )
