import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from generation.pipelines import (
    decode_animated_webp,
    encode_animated_webp,
    encode_png,
    sha256_hex,
)


def _random_rgba(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)


def test_sha256_hex_of_empty_bytes():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_png_round_trips_pixels_exactly_as_rgba():
    pixels = _random_rgba(0)

    decoded = Image.open(io.BytesIO(encode_png(Image.fromarray(pixels))))

    assert decoded.mode == "RGBA"
    assert np.array_equal(np.asarray(decoded), pixels)


def test_png_bytes_depend_only_on_pixels():
    pixels = _random_rgba(1)
    with_metadata = Image.fromarray(pixels)
    with_metadata.info["comment"] = "made at 12:00"
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "something")
    buffer = io.BytesIO()
    with_metadata.save(buffer, format="PNG", pnginfo=info)
    reloaded = Image.open(io.BytesIO(buffer.getvalue()))

    assert encode_png(reloaded) == encode_png(Image.fromarray(pixels)) == encode_png(pixels)


def test_png_of_rgb_image_is_opaque_rgba():
    decoded = Image.open(io.BytesIO(encode_png(Image.new("RGB", (4, 4), (10, 20, 30)))))

    assert decoded.mode == "RGBA"
    assert decoded.getpixel((0, 0)) == (10, 20, 30, 255)


def test_webp_round_trip_keeps_frame_count_and_alpha():
    frames = [Image.fromarray(_random_rgba(seed)) for seed in range(8)]

    decoded = decode_animated_webp(encode_animated_webp(frames, fps=8))

    assert len(decoded) == 8
    assert {frame.mode for frame in decoded} == {"RGBA"}
    assert {frame.size for frame in decoded} == {(16, 16)}
    for original, frame in zip(frames, decoded, strict=True):
        assert np.array_equal(np.asarray(frame)[..., 3], np.asarray(original)[..., 3])


@pytest.mark.parametrize("colour_step", [0, 1])
def test_webp_keeps_every_frame_of_a_nearly_still_animation(colour_step):
    # libwebp alone merges these 8 frames (identical, or 1 colour level apart) into one
    # and drops the alpha
    frames = []
    for index in range(8):
        pixels = np.zeros((16, 16, 4), dtype=np.uint8)
        pixels[4:12, 4:12] = (255 - colour_step * (index % 2), 0, 0, 255)
        frames.append(Image.fromarray(pixels))

    decoded = decode_animated_webp(encode_animated_webp(frames))

    assert len(decoded) == 8
    for original, frame in zip(frames, decoded, strict=True):
        difference = np.abs(
            np.asarray(frame)[..., 3].astype(int) - np.asarray(original)[..., 3].astype(int)
        )
        assert difference.max() <= 1
        assert difference[1:, :].sum() == difference[:, 1:].sum() == 0


def test_webp_loops_forever_at_the_given_frame_rate():
    frames = [Image.fromarray(_random_rgba(seed)) for seed in range(3)]

    with Image.open(io.BytesIO(encode_animated_webp(frames, fps=4))) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            durations.append(image.info["duration"])
        loop = image.info["loop"]

    assert (loop, durations) == (0, [250, 250, 250])


def test_webp_bytes_are_deterministic():
    frames = [Image.fromarray(_random_rgba(seed)) for seed in range(4)]

    assert encode_animated_webp(frames) == encode_animated_webp([f.copy() for f in frames])


@pytest.mark.parametrize("fps", [0, 61, 2.5])
def test_webp_rejects_bad_fps(fps):
    with pytest.raises(ValueError) as excinfo:
        encode_animated_webp([Image.new("RGBA", (8, 8))], fps=fps)

    assert str(excinfo.value) == f"`fps` has to be an integer between 1 and 60 but is {fps!r}."


def test_webp_rejects_frames_of_different_sizes():
    with pytest.raises(ValueError) as excinfo:
        encode_animated_webp([Image.new("RGBA", (8, 8)), Image.new("RGBA", (16, 8))])

    assert str(excinfo.value) == "frames have to share one size but have sizes [(8, 8), (16, 8)]."
