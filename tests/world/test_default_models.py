"""The committed default models are what the current recipe builds, and install safely."""

import json
import shutil

import diffusers
import pytest
import torch

from generation.world.defaults import (
    WEIGHTS_DIR,
    DefaultModelsError,
    install_default_models,
    read_manifest,
    verify,
)
from training_bridge.recipes.world_models import file_hashes, source_fingerprint

MAX_BYTES = 25_000_000


def test_committed_models_were_built_by_the_current_recipe():
    manifest = read_manifest()
    # Any change to the renderer, the tiny-model builders or the recipes that can change a
    # weight changes this fingerprint: rebuild with `make world-models` and commit the result.
    assert manifest["source_fingerprint"] == source_fingerprint()
    assert manifest["torch"] == torch.__version__
    assert manifest["diffusers"] == diffusers.__version__


def test_committed_files_match_their_recorded_hashes():
    manifest = read_manifest()
    assert file_hashes(WEIGHTS_DIR) == manifest["files"]
    for name in manifest["models"]:
        verify(WEIGHTS_DIR, manifest, name)


def test_committed_weights_fit_the_size_budget():
    weights = list(WEIGHTS_DIR.rglob("*.safetensors"))
    assert len(weights) == 11
    assert sum(path.stat().st_size for path in weights) <= MAX_BYTES


def test_install_copies_models_and_describes_them(tmp_path):
    models = install_default_models(tmp_path)
    assert [(m["name"], m["kind"], m["role"]) for m in models] == [
        ("sticker-base", "image", "base"),
        ("anim-teacher-a", "animation", "teacher"),
        ("anim-teacher-b", "animation", "teacher"),
        ("anim-student", "animation", "student"),
    ]
    assert [m["uri"] for m in models] == [str(tmp_path / m["name"]) for m in models]
    assert models[0]["default_params"] == {
        "num_inference_steps": 20,
        "guidance_scale": 4.0,
        "width": 64,
        "height": 64,
    }
    assert models[1]["default_params"]["num_inference_steps"] == 12
    assert models[3]["default_params"]["num_inference_steps"] == 6
    manifest = read_manifest()
    assert file_hashes(tmp_path) == manifest["files"]
    assert {(tmp_path / m["name"]).stat().st_mode & 0o777 for m in models} == {0o755}


def test_install_is_idempotent_and_repairs_a_changed_copy(tmp_path):
    install_default_models(tmp_path)
    weights = tmp_path / "sticker-base" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"not a model")
    install_default_models(tmp_path)
    assert file_hashes(tmp_path) == read_manifest()["files"]


def test_a_corrupt_committed_file_is_refused_by_name_and_nothing_is_installed(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(WEIGHTS_DIR, source)
    broken = source / "anim-teacher-b" / "vae" / "diffusion_pytorch_model.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])
    target = tmp_path / "models"
    with pytest.raises(DefaultModelsError, match=str(broken)):
        install_default_models(target, source=source)
    assert not target.exists()


def test_a_missing_file_or_manifest_is_refused_by_name(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(WEIGHTS_DIR, source)
    missing = source / "sticker-base" / "text_encoder" / "model.safetensors"
    missing.unlink()
    with pytest.raises(DefaultModelsError, match=f"{missing} is missing"):
        install_default_models(tmp_path / "models", source=source)
    (source / "manifest.json").unlink()
    with pytest.raises(DefaultModelsError, match="manifest.json is missing"):
        install_default_models(tmp_path / "models", source=source)
    (source / "manifest.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(DefaultModelsError, match="lists no models"):
        install_default_models(tmp_path / "models", source=source)
