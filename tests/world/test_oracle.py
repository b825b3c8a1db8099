"""The committed oracle judges: they load, see what fresh held-out renders show, and refuse
weights that are missing or corrupt with a message naming the file."""

import hashlib
import json
import math
import shutil

import pytest

from generation.world import factors
from generation.world.oracle import Oracle, OracleError
from generation.world.oracle.data import clip_draw, clip_truth, image_spec, image_truth
from generation.world.oracle.model import encode_image
from generation.world.oracle.store import DEFAULT_FOLDER
from generation.world.render import StickerSpec, render_animation, render_sticker

SAMPLES = 50
# At least 47 of 50 per factor: the bench measures at least 0.95 on 2,000 images and 700 clips.
AT_LEAST_RIGHT = 47
IMAGE_VALUES = {
    "subject": set(factors.SUBJECT_NAMES),
    "colour": set(factors.COLOUR_NAMES),
    "expression": {*factors.EXPRESSION_NAMES, "none"},
    **{part: set(values) for part, values in factors.STYLE_PARTS.items()},
    "sticker_style": {"yes", "no"},
}
CLIP_VALUES = {
    "motion": {*factors.MOTION_NAMES, "still"},
    "smoothness": {"smooth", "jerky"},
}


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle.load()


@pytest.fixture(scope="module")
def held_out_images():
    specs = [image_spec("oracle-eval", index) for index in range(SAMPLES)]
    return specs, [render_sticker(spec) for spec in specs]


@pytest.fixture(scope="module")
def held_out_clips():
    draws = [clip_draw("oracle-eval", index) for index in range(SAMPLES)]
    clips = [render_animation(d.spec, d.motion, smoothness=d.smoothness) for d in draws]
    return draws, clips


@pytest.fixture
def weights_copy(tmp_path):
    return shutil.copytree(DEFAULT_FOLDER, tmp_path / "weights")


def _right_per_factor(predicted: list[dict], truths: list[dict]) -> dict[str, int]:
    return {
        head: sum(p[head] == t[head] for p, t in zip(predicted, truths, strict=True))
        for head in truths[0]
    }


def test_the_image_oracle_sees_what_held_out_renders_show(oracle, held_out_images):
    specs, images = held_out_images

    predicted = oracle.predict_images(images)

    right = _right_per_factor(predicted, [image_truth(spec) for spec in specs])
    assert set(right) == set(IMAGE_VALUES) - {"sticker_style"}
    assert {head: n for head, n in right.items() if n < AT_LEAST_RIGHT} == {}


def test_the_animation_oracle_sees_how_held_out_clips_move(oracle, held_out_clips):
    draws, clips = held_out_clips

    predicted = oracle.predict_animations(clips)

    right = _right_per_factor(predicted, [clip_truth(draw) for draw in draws])
    assert set(right) == set(CLIP_VALUES)
    assert {head: n for head, n in right.items() if n < AT_LEAST_RIGHT} == {}


def test_judge_images_gives_every_factor_as_probabilities(oracle, held_out_images):
    _, images = held_out_images

    judged = oracle.judge_images(images[:3])

    assert len(judged) == 3
    for judgement in judged:
        assert {head: set(values) for head, values in judgement.items()} == IMAGE_VALUES
        for values in judgement.values():
            assert math.isclose(sum(values.values()), 1.0, abs_tol=1e-5)
            assert all(0.0 <= p <= 1.0 for p in values.values())
        in_style = math.prod(judgement[part][value] for part, value in factors.IN_STYLE.items())
        assert judgement["sticker_style"]["yes"] == pytest.approx(in_style, abs=1e-12)


def test_judge_animations_gives_motion_and_smoothness_as_probabilities(oracle, held_out_clips):
    _, clips = held_out_clips

    judged = oracle.judge_animations(clips[:3])

    assert len(judged) == 3
    for judgement in judged:
        assert {head: set(values) for head, values in judgement.items()} == CLIP_VALUES
        for values in judgement.values():
            assert math.isclose(sum(values.values()), 1.0, abs_tol=1e-5)


def test_predictions_are_the_most_probable_values(oracle, held_out_images):
    _, images = held_out_images

    judged = oracle.judge_images(images[:5])
    predicted = oracle.predict_images(images[:5])

    assert predicted == [{h: max(v, key=v.get) for h, v in j.items()} for j in judged]


def test_empty_lists_give_empty_answers(oracle):
    assert oracle.judge_images([]) == []
    assert oracle.predict_animations([]) == []


def test_an_rgb_image_counts_as_opaque_and_a_larger_one_is_resized(oracle):
    sticker = render_sticker(StickerSpec("cat", "blue", "happy", background="opaque", seed=4))

    assert (encode_image(sticker.convert("RGB")) == encode_image(sticker)).all()
    larger = oracle.predict_images([sticker.resize((128, 128))])[0]
    assert (larger["subject"], larger["colour"], larger["background"]) == ("cat", "blue", "opaque")


def test_a_clip_needs_eight_frames(oracle):
    frames = render_animation(StickerSpec("star", "red", seed=1), "spin")

    with pytest.raises(ValueError) as error:
        oracle.judge_animations([frames[:7]])

    assert str(error.value) == "a clip has to have 8 frames but has 7."


def test_a_missing_folder_names_its_config(tmp_path):
    with pytest.raises(OracleError) as error:
        Oracle.load(tmp_path / "nowhere")

    assert (
        str(error.value)
        == f"The oracle config {tmp_path / 'nowhere' / 'config.json'} does not exist."
    )


def test_a_missing_weights_file_is_named(weights_copy):
    (weights_copy / "animation.safetensors").unlink()

    with pytest.raises(OracleError) as error:
        Oracle.load(weights_copy)

    assert str(error.value) == (
        f"The oracle weights {weights_copy / 'animation.safetensors'} do not exist."
    )


def test_a_truncated_weights_file_is_named(weights_copy):
    path = weights_copy / "image.safetensors"
    path.write_bytes(path.read_bytes()[:1000])

    with pytest.raises(OracleError) as error:
        Oracle.load(weights_copy)

    assert str(error.value) == f"The oracle weights {path} do not match the sha256 in config.json."


def test_an_unreadable_weights_file_with_a_matching_hash_is_named(weights_copy):
    path = weights_copy / "image.safetensors"
    path.write_bytes(b"not safetensors")
    config = json.loads((weights_copy / "config.json").read_text())
    config["image"]["sha256"] = hashlib.sha256(b"not safetensors").hexdigest()
    (weights_copy / "config.json").write_text(json.dumps(config))

    with pytest.raises(OracleError) as error:
        Oracle.load(weights_copy)

    assert str(error.value).startswith(f"The oracle weights {path} cannot be loaded: ")


def test_a_corrupt_config_is_named(weights_copy):
    (weights_copy / "config.json").write_text("{not json")

    with pytest.raises(OracleError) as error:
        Oracle.load(weights_copy)

    assert str(error.value).startswith(
        f"The oracle config {weights_copy / 'config.json'} cannot be read: "
    )


def test_weights_made_for_other_factor_values_are_refused(weights_copy):
    config = json.loads((weights_copy / "config.json").read_text())
    config["image"]["heads"]["subject"].pop()
    (weights_copy / "config.json").write_text(json.dumps(config))

    with pytest.raises(OracleError) as error:
        Oracle.load(weights_copy)

    assert str(error.value) == (
        f"The oracle weights {weights_copy / 'image.safetensors'} were trained for other factor "
        "values than the world has now; retrain them with "
        "`python -m generation.world.oracle.train`."
    )


def test_the_committed_weights_are_small_and_record_how_they_were_made(oracle):
    sizes = sum(path.stat().st_size for path in DEFAULT_FOLDER.iterdir())

    assert sizes < 3_000_000
    assert oracle.config["training"]["stream"] == "oracle"
