"""The world's default models: the build writes a manifest that install checks file by file.

The models here are built at the quick scale (a few training steps, the full architectures):
enough to check the build's outputs, its determinism and the installer, without training for
an hour in the suite.
"""

import hashlib
import json
import shutil

import diffusers
import pytest
import torch
from diffusers import AutoencoderKL

from generation.pipelines.tiny import rgb_vae_from_rgba
from generation.world.defaults import (
    DefaultModelsError,
    has_weights,
    install_default_models,
    read_manifest,
    verify,
)
from training_bridge.recipes.world_models import build_all, file_hashes, source_fingerprint

MAX_BYTES = 25_000_000


@pytest.fixture(scope="session")
def quick_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("world-models") / "weights"
    build_all(out, quick=True)
    return out


def test_the_build_records_hashes_fingerprint_and_versions(quick_models):
    manifest = read_manifest(quick_models)
    assert has_weights(quick_models)
    assert manifest["source_fingerprint"] == source_fingerprint()
    assert (manifest["torch"], manifest["diffusers"]) == (torch.__version__, diffusers.__version__)
    assert manifest["models"] == {
        "sticker-base": {"kind": "image", "role": "base"},
        "anim-teacher-a": {"kind": "animation", "role": "teacher"},
        "anim-teacher-b": {"kind": "animation", "role": "teacher"},
        "anim-student": {"kind": "animation", "role": "student"},
    }
    assert file_hashes(quick_models) == manifest["files"]
    for name in manifest["models"]:
        verify(quick_models, manifest, name)
    # No machine path leaks into a config: the scratch folders they were loaded from are gone.
    assert not [
        path
        for path in quick_models.rglob("*.json")
        if "_name_or_path" in path.read_text() or str(quick_models.parent) in path.read_text()
    ]


def test_the_weights_fit_the_size_budget(quick_models):
    # The quick scale trains fewer steps but builds the same architectures, so the sizes are
    # those of the full build.
    weights = list(quick_models.rglob("*.safetensors"))
    assert len(weights) == 12
    assert sum(path.stat().st_size for path in weights) <= MAX_BYTES


def test_the_animation_models_share_the_trained_rgb_vae(quick_models):
    """Every animation model reads and draws with the one VAE the build trained for white
    composites (stage ``anim-vae``), not the fold of the base's RGBA VAE."""
    name = "diffusion_pytorch_model.safetensors"
    shared = {
        hashlib.sha256((quick_models / model / "vae" / name).read_bytes()).hexdigest()
        for model in ("anim-teacher-a", "anim-teacher-b", "anim-student")
    }
    base_vae = AutoencoderKL.from_pretrained(str(quick_models / "sticker-base" / "vae"))
    # The fold as the build would store it (float16), so only training can tell them apart.
    folded = rgb_vae_from_rgba(base_vae).half().float().state_dict()
    trained = AutoencoderKL.from_pretrained(str(quick_models / "anim-teacher-a" / "vae"))
    weights = trained.float().state_dict()

    assert len(shared) == 1
    assert (trained.config.in_channels, trained.config.out_channels) == (3, 3)
    assert folded.keys() == weights.keys()
    assert [key for key in weights if not torch.equal(weights[key], folded[key])]


def test_install_copies_models_and_describes_them(quick_models, tmp_path):
    models = install_default_models(tmp_path, source=quick_models)
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
    assert [m["default_params"]["num_inference_steps"] for m in models[1:]] == [12, 12, 6]
    assert file_hashes(tmp_path) == read_manifest(quick_models)["files"]
    assert {(tmp_path / m["name"]).stat().st_mode & 0o777 for m in models} == {0o755}


def test_install_is_idempotent_and_repairs_a_changed_copy(quick_models, tmp_path):
    install_default_models(tmp_path, source=quick_models)
    weights = tmp_path / "sticker-base" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"not a model")
    install_default_models(tmp_path, source=quick_models)
    assert file_hashes(tmp_path) == read_manifest(quick_models)["files"]


def test_a_corrupt_file_is_refused_by_name_and_nothing_is_installed(quick_models, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(quick_models, source)
    broken = source / "anim-teacher-b" / "vae" / "diffusion_pytorch_model.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])
    target = tmp_path / "models"
    with pytest.raises(DefaultModelsError, match=str(broken)):
        install_default_models(target, source=source)
    assert not target.exists()


def test_a_missing_file_or_manifest_is_refused_by_name(quick_models, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(quick_models, source)
    missing = source / "sticker-base" / "text_encoder" / "model.safetensors"
    missing.unlink()
    with pytest.raises(DefaultModelsError, match=f"{missing} is missing"):
        install_default_models(tmp_path / "models", source=source)
    (source / "manifest.json").unlink()
    assert not has_weights(source)
    with pytest.raises(DefaultModelsError, match="manifest.json is missing"):
        install_default_models(tmp_path / "models", source=source)
    (source / "manifest.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(DefaultModelsError, match="lists no models"):
        install_default_models(tmp_path / "models", source=source)


@pytest.mark.django_db
def test_registering_points_existing_versions_at_the_world_models(quick_models, tmp_path):
    from generation.models import ModelVersion
    from generation.services.model_versions import default_models_register

    tiny = default_models_register(root=tmp_path / "tiny", source=tmp_path / "no-weights")
    assert [v.max_prompt_tokens for v in tiny] == [77, 77, 77, 77]
    versions = default_models_register(root=tmp_path / "world", source=quick_models)
    assert [v.pk for v in versions] == [v.pk for v in tiny]
    base = ModelVersion.objects.get(name="sticker-base")
    assert (base.uri, base.max_prompt_tokens, base.default_params["num_inference_steps"]) == (
        str(tmp_path / "world" / "sticker-base"),
        32,
        20,
    )
    assert base.description.startswith("Sticker-world base")
