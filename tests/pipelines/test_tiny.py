import hashlib
import shutil
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from generation.pipelines import build_tiny_models, build_tiny_sticker_model
from generation.pipelines.tiny import build_tokenizer, rgb_vae_from_rgba

IMAGE_PARAMS = {"num_inference_steps": 8, "guidance_scale": 5.0, "width": 64, "height": 64}
ANIMATION_PARAMS = {
    "num_inference_steps": 6,
    "guidance_scale": 5.0,
    "width": 64,
    "height": 64,
    "num_frames": 8,
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_models_are_described_exactly(pipeline_models, pipeline_models_root):
    assert list(pipeline_models.values()) == [
        {
            "name": "sticker-base",
            "kind": "image",
            "role": "base",
            "uri": str(pipeline_models_root / "sticker-base"),
            "default_params": IMAGE_PARAMS,
            "description": pipeline_models["sticker-base"]["description"],
        },
        *[
            {
                "name": name,
                "kind": "animation",
                "role": role,
                "uri": str(pipeline_models_root / name),
                "default_params": ANIMATION_PARAMS,
                "description": pipeline_models[name]["description"],
            }
            for name, role in [
                ("anim-teacher-a", "teacher"),
                ("anim-teacher-b", "teacher"),
                ("anim-student", "student"),
            ]
        ],
    ]
    assert all(Path(spec["uri"]).is_absolute() for spec in pipeline_models.values())
    # readable by web and worker processes running as other users
    assert {Path(spec["uri"]).stat().st_mode & 0o777 for spec in pipeline_models.values()} == {
        0o755
    }


def test_default_models_reload_through_diffusion_pipeline(pipeline_models):
    classes = {
        name: type(DiffusionPipeline.from_pretrained(spec["uri"])).__name__
        for name, spec in pipeline_models.items()
    }

    assert classes == {
        "sticker-base": "StableDiffusionPipeline",
        "anim-teacher-a": "AnimateDiffVideoToVideoPipeline",
        "anim-teacher-b": "AnimateDiffVideoToVideoPipeline",
        "anim-student": "AnimateDiffVideoToVideoPipeline",
    }


def test_student_has_the_smallest_motion_modules(pipeline_models):
    sizes = {
        name: sum(
            p.numel()
            for p in DiffusionPipeline.from_pretrained(spec["uri"]).motion_adapter.parameters()
        )
        for name, spec in pipeline_models.items()
        if spec["kind"] == "animation"
    }

    assert sizes["anim-student"] < sizes["anim-teacher-a"] < sizes["anim-teacher-b"]


def test_build_tiny_models_skips_models_that_load(pipeline_models, pipeline_models_root):
    weights = pipeline_models_root / "sticker-base" / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns

    again = build_tiny_models(pipeline_models_root)

    assert again == list(pipeline_models.values())
    assert weights.stat().st_mtime_ns == before


def test_build_tiny_models_rebuilds_a_broken_model(pipeline_models_root, tmp_path):
    root = Path(shutil.copytree(pipeline_models_root, tmp_path / "models"))
    student_weights = root / "anim-student" / "unet" / "diffusion_pytorch_model.safetensors"
    expected = _sha(student_weights)
    student_weights.unlink()
    teacher_weights = root / "anim-teacher-a" / "unet" / "diffusion_pytorch_model.safetensors"
    teacher_mtime = teacher_weights.stat().st_mtime_ns

    build_tiny_models(root)

    assert _sha(student_weights) == expected
    assert teacher_weights.stat().st_mtime_ns == teacher_mtime
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_sticker_model_weights_depend_only_on_the_seed(pipeline_models, tmp_path):
    default_unet = Path(pipeline_models["sticker-base"]["uri"]) / "unet"

    same = build_tiny_sticker_model(tmp_path / "same", seed=0)
    other = build_tiny_sticker_model(tmp_path / "other", seed=1)

    name = "diffusion_pytorch_model.safetensors"
    assert _sha(same / "unet" / name) == _sha(default_unet / name)
    assert _sha(other / "unet" / name) != _sha(default_unet / name)


def test_byte_level_tokenizer():
    tokenizer = build_tokenizer()

    assert (len(tokenizer), tokenizer.model_max_length) == (514, 77)
    assert tokenizer("a cat").input_ids == [512, 353, 99, 97, 372, 513]


def test_rgb_vae_shares_the_latent_space_of_the_rgba_vae(sticker_pipeline):
    rgba_vae = sticker_pipeline.pipe.vae
    rgb_vae = rgb_vae_from_rgba(rgba_vae)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        rgba = rgba_vae.decode(latents).sample
        rgb = rgb_vae.decode(latents).sample
        opaque = torch.cat([rgb, torch.ones(1, 1, 64, 64)], dim=1)
        encoded_rgba = rgba_vae.encode(opaque).latent_dist.mean
        encoded_rgb = rgb_vae.encode(rgb).latent_dist.mean

    assert (rgb_vae.config.in_channels, rgb_vae.config.out_channels) == (3, 3)
    # same weights; only float rounding differs between 3- and 4-channel convolutions
    assert torch.allclose(rgb, rgba[:, :3], atol=1e-5)
    # close, not equal: the RGBA encoder's zero padding sees alpha 0 at the border, and four
    # downsampling levels spread that over the whole 8x8 latent
    difference = (encoded_rgb - encoded_rgba).abs().mean()
    assert difference < 0.2 * encoded_rgba.std()
