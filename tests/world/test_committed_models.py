"""The committed default models are what the current code would build: the manifest's fingerprint
of the renderer, the tiny-model builders and the recipes matches the code as it is, and every
committed file matches its recorded SHA-256. Checked by hashes, not by retraining in the suite
(``python bench/world_models.py`` rebuilds at full size and compares)."""

import pytest

from generation.world.defaults import WEIGHTS_DIR, has_weights, read_manifest, verify
from training_bridge.recipes.world_models import file_hashes, source_fingerprint

MAX_BYTES = 25_000_000
MODELS = {
    "sticker-base": {"kind": "image", "role": "base"},
    "anim-teacher-a": {"kind": "animation", "role": "teacher"},
    "anim-teacher-b": {"kind": "animation", "role": "teacher"},
    "anim-student": {"kind": "animation", "role": "student"},
}


@pytest.fixture(scope="module")
def manifest():
    assert has_weights(WEIGHTS_DIR), f"{WEIGHTS_DIR} holds no manifest.json"
    return read_manifest(WEIGHTS_DIR)


def test_the_committed_models_were_built_by_the_current_code(manifest):
    assert manifest["source_fingerprint"] == source_fingerprint(), (
        "The renderer, tiny-model builders or recipes changed since the committed default models "
        "were built: rebuild them with `make world-models` and commit generation/world/weights."
    )


def test_every_committed_file_matches_its_recorded_hash(manifest):
    assert manifest["models"] == MODELS
    assert file_hashes(WEIGHTS_DIR) == manifest["files"]
    for name in MODELS:
        verify(WEIGHTS_DIR, manifest, name)


def test_the_committed_weights_fit_the_size_budget(manifest):
    weights = list(WEIGHTS_DIR.rglob("*.safetensors"))

    assert len(weights) == 12
    assert sum(path.stat().st_size for path in weights) <= MAX_BYTES


def test_no_build_path_is_left_in_a_committed_config(manifest):
    leaked = [
        path
        for path in WEIGHTS_DIR.rglob("*.json")
        if "_name_or_path" in path.read_text() or "/tmp/" in path.read_text()
    ]

    assert leaked == []
