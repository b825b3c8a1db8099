"""Build the sticker world's default models from the renderer and the recipes, bit for bit.

    python -m training_bridge.recipes.world_models --out generation/world/models

Stages (each process on one CPU thread with deterministic algorithms, so a rebuild on the same
torch gives identical files):

1. ``sticker-base``: an RGBA VAE trained on weak-corpus renders, then a word-level text encoder
   and UNet trained together on the weak corpus's captions (``pretrain``), data-parallel over
   ``BASE_PROCESSES`` processes (a gloo process group on this machine). About 30 % of the
   corpus is in sticker style and 15 % of its captions are wrong in one factor, so the base
   draws recognisable stickers but not reliably in style: what curation is for.
2. ``anim-vae``: the RGB VAE every animation model reads and draws white composites with,
   trained (``pretrain.train_composite_vae``, data-parallel like the base) in the base VAE's
   latent space on frames of rendered clips; kept in the build's work folder.
3. ``anim-teacher-a`` / ``anim-teacher-b``: AnimateDiff video-to-video models made from the
   base and that VAE, whose motion modules the ``finetune`` recipe trains on rendered clips.
   Each teacher sees only its own motion (bounce, spin), so each animates one motion well.
4. ``anim-student``: smaller motion modules, trained briefly on every motion; the starting
   point the distillation recipe improves from teacher-selection sets.

The teachers and the student train in parallel processes. Weights are stored as float16 safetensors.
``manifest.json`` records each file's SHA-256 and the fingerprint of the sources that made it,
so a test can tell whether the committed models are what the current recipe would produce.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# Every source whose change can change a weight; the fingerprint covers them all.
SOURCE_PATTERNS = (
    "generation/world/factors.py",
    "generation/world/shapes.py",
    "generation/world/render.py",
    "generation/world/motions.py",
    "generation/world/captions.py",
    "generation/world/sampling.py",
    "generation/pipelines/tiny.py",
    "training_bridge/recipes/*.py",
)
REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPT_TOKENS = 32
DEFAULT_OUT = REPO_ROOT / "generation" / "world" / "weights"
# Two: the machine the build is budgeted on has two cores, and with two processes the gradient
# average is the same bytes whichever process adds (see pretrain.Shard). Changing it changes the
# weights, so it is part of the fingerprint (it is code in this file).
BASE_PROCESSES = 2


@dataclass(frozen=True)
class Scale:
    """Sizes of one build; ``FULL`` makes the committed models, ``QUICK`` checks the path."""

    images: int
    vae_steps: int
    t2i_steps: int
    clips: int
    teacher_steps: int
    student_steps: int
    # The animation models' RGB VAE: steps, and clips whose frames it trains on.
    composite_vae_steps: int
    composite_clips: int


# VAE steps: reconstructed colours come late (on weak renders it kept 0.63 of subject colours at
# step 600 and 0.95 at 900, the end of a 900-step schedule), so the VAE gets a margin beyond that.
# Text-to-image steps: at 2,600 the base drew the asked subject and colour together in a third
# of held-in prompts; 1,500 more steps on the same images raised that to 0.64 (README).
FULL = Scale(
    images=16384,
    vae_steps=1300,
    t2i_steps=5000,
    clips=2400,
    teacher_steps=1500,
    student_steps=600,
    composite_vae_steps=300,
    composite_clips=600,
)
QUICK = Scale(
    images=256,
    vae_steps=4,
    t2i_steps=4,
    clips=16,
    teacher_steps=2,
    student_steps=2,
    composite_vae_steps=2,
    composite_clips=4,
)
ANIMATION_VAE = "anim-vae"

UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    # Cross-attention at both resolutions: colour and subject are read from the text at 8x8
    # as well as 4x4, which binds colour to the prompt far better than 4x4 alone.
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    # Four channels per normalisation group. diffusers' default of 32 groups on 32 channels
    # normalises every channel on its own over the image, which wipes out exactly the
    # per-channel offsets that carry a flat sticker's colour (a first build with it drew every
    # sticker brown).
    "norm_num_groups": 8,
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (16, 32, 48, 48),
    # Four channels per group, for the same reason as the UNet's: one channel per group (the
    # default on narrow blocks) cannot pass colour through.
    "norm_num_groups": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "sample_size": 64,
    "force_upcast": False,
}
TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": PROMPT_TOKENS,
    "layer_norm_eps": 1e-5,
}


@dataclass(frozen=True)
class AnimationModel:
    name: str
    role: str
    seed: int
    # Motions this model sees most (``share`` of its clips); the rest are spread over the others.
    # A teacher is a specialist: motion modules attend across frames, never to the prompt, so
    # one trained on a mixture cannot tell which motion a prompt asks for (teachers that saw
    # 85 % of three motions drew no recognisable motion at all). Which teacher suits a prompt
    # is what best-of-N campaigns find out.
    motions: tuple[str, ...]
    share: float
    adapter: dict[str, Any] = field(default_factory=dict)


ANIMATION_MODELS: tuple[AnimationModel, ...] = (
    AnimationModel(
        "anim-teacher-a",
        "teacher",
        1,
        ("bounce",),
        1.0,
        {
            "motion_num_attention_heads": 4,
            "motion_transformer_layers": 1,
            "motion_norm_num_groups": 8,
        },
    ),
    AnimationModel(
        "anim-teacher-b",
        "teacher",
        2,
        ("spin",),
        1.0,
        {
            "motion_num_attention_heads": 4,
            "motion_transformer_layers": 1,
            "motion_norm_num_groups": 8,
        },
    ),
    AnimationModel(
        "anim-student",
        "student",
        3,
        (),
        0.0,
        {
            "motion_num_attention_heads": 2,
            "motion_transformer_layers": 1,
            "use_motion_mid_block": False,
            "motion_norm_num_groups": 8,
        },
    ),
)


def _deterministic() -> None:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def _log(stage: str, fields: dict[str, Any]) -> None:
    print(json.dumps({"stage": stage, **fields}), flush=True)


# Stage 1: the text-to-sticker base ----------------------------------------------------------------


def _render_weak_images(count: int, shard):
    """Every caption of the first ``count`` weak samples, and all their renders: each process
    renders its share and the shares are gathered."""
    import numpy as np
    import torch

    from generation.world.render import render_sticker
    from generation.world.sampling import weak_sample

    samples = [weak_sample(index) for index in range(count)]
    share = count // shard.size
    mine = samples[shard.rank * share : (shard.rank + 1) * share]
    images = np.stack([np.asarray(render_sticker(sample.spec)) for sample in mine])
    images = shard.gather(torch.from_numpy(images)).numpy()
    return images, [sample.caption for sample in samples]


def build_sticker_base(out: Path, scale: Scale, shard) -> Path:
    """Train ``sticker-base`` as process ``shard.rank``; the first process saves it under ``out``.

    Returns its folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.pipelines.tiny import (
        SCHEDULER_CONFIG,
        build_word_tokenizer,
        save_atomically,
    )
    from generation.world.captions import vocabulary

    from .pretrain import (
        TextToImageSettings,
        VaeSettings,
        encode_latents,
        tokenize,
        train_text_to_image,
        train_vae,
    )

    _deterministic()
    started = time.perf_counter()
    log = _log if shard.rank == 0 else None
    images, captions = _render_weak_images(scale.images, shard)
    if log:
        log("render", {"images": len(images), "seconds": round(time.perf_counter() - started, 1)})

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG)
    vae_metrics = train_vae(
        images, vae, VaeSettings(steps=scale.vae_steps), report=log, shard=shard
    )
    latents = encode_latents(images, vae, shard=shard)
    # Unit-variance latents, as Stable Diffusion's 0.18215 does for its VAE.
    scaling = round(1.0 / float(latents.std()), 5)
    vae.register_to_config(scaling_factor=scaling)
    latents = latents * scaling

    tokenizer = build_word_tokenizer(vocabulary(), max_length=PROMPT_TOKENS)
    torch.manual_seed(1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TEXT_CONFIG,
        )
    )
    torch.manual_seed(2)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    sampler = DDIMScheduler(**SCHEDULER_CONFIG)
    # Training noises with the same betas the DDIM sampler denoises with.
    noise_scheduler = DDPMScheduler.from_config(sampler.config)
    t2i_metrics = train_text_to_image(
        latents,
        tokenize(tokenizer, captions),
        tokenize(tokenizer, [""])[0],
        unet=unet,
        text_encoder=text_encoder,
        noise_scheduler=noise_scheduler,
        settings=TextToImageSettings(steps=scale.t2i_steps),
        report=log,
        shard=shard,
    )
    path = out / "sticker-base"
    if shard.rank != 0:
        return path
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=sampler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=torch.float16)
    save_atomically(pipe, path)
    _log(
        "sticker-base",
        {
            "vae": vae_metrics,
            "text_to_image": t2i_metrics,
            "scaling_factor": scaling,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return path


# Stage 2: the animation models' RGB VAE ----------------------------------------------------


def build_animation_vae(out: Path, scale: Scale, work: Path, shard) -> Path:
    """Train the RGB VAE of the animation models as process ``shard.rank``; the first process
    saves it to ``work``. Returns its folder."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from generation.pipelines.tiny import rgb_vae_from_rgba
    from generation.world.factors import MOTION_NAMES
    from generation.world.render import render_animation
    from generation.world.sampling import sample_spec, stream_rng

    from .pretrain import CompositeVaeSettings, train_composite_vae

    _deterministic()
    started = time.perf_counter()
    frames = []
    for index in range(scale.composite_clips):
        rng = stream_rng("weak-motion", index)
        spec = sample_spec(rng)
        frames += [np.asarray(f) for f in render_animation(spec, rng.choice(MOTION_NAMES))]
    rgba_vae = AutoencoderKL.from_pretrained(str(out / "sticker-base" / "vae"), dtype=torch.float32)
    rgb_vae = rgb_vae_from_rgba(rgba_vae)
    metrics = train_composite_vae(
        np.stack(frames),
        rgba_vae,
        rgb_vae,
        CompositeVaeSettings(steps=scale.composite_vae_steps),
        report=_log if shard.rank == 0 else None,
        shard=shard,
    )
    path = work / ANIMATION_VAE
    if shard.rank == 0:
        rgb_vae.save_pretrained(path)
        _log(ANIMATION_VAE, {**metrics, "seconds": round(time.perf_counter() - started, 1)})
    return path


# Stage 3 and 4: animation models -----------------------------------------------------------


def _clip_motion(model: AnimationModel, index: int, rng) -> str:
    from generation.world.factors import MOTION_NAMES

    if model.motions and rng.random() < model.share:
        return rng.choice(model.motions)
    return rng.choice(MOTION_NAMES)


def write_clip_export(folder: Path, model: AnimationModel, count: int) -> Path:
    """Write ``count`` rendered smooth clips as a dataset export the recipes read.

    Specs and captions come from the ``weak-motion`` stream; the motion of each clip is drawn
    from the model's mixture instead of the stream's, so each teacher sees its own motions.
    """
    from generation.world.captions import caption
    from generation.world.render import render_animation
    from generation.world.sampling import sample_spec, stream_rng

    split = folder / "train"
    split.mkdir(parents=True)
    rows = []
    for index in range(count):
        rng = stream_rng("weak-motion", index)
        spec = sample_spec(rng)
        motion = _clip_motion(model, index, rng)
        frames = render_animation(spec, motion)
        frames_dir = f"clip-{index:05d}"
        (split / frames_dir).mkdir()
        for number, frame in enumerate(frames):
            frame.save(split / frames_dir / f"frame-{number:03d}.png")
        file_name = f"{frames_dir}/frame-000.png"
        text = caption(spec, rng, motion=motion)
        rows.append({"file_name": file_name, "text": text, "frames_dir": frames_dir})
    (split / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "dataset_version_id": 0,
                "purpose": "motion",
                "kind": "animation",
                "manifest_sha256": "",
                "entry_count": len(rows),
            }
        )
    )
    return folder


def build_animation_model(out: Path, model: AnimationModel, scale: Scale, work: Path) -> Path:
    """Make ``model`` from ``sticker-base`` and train its motion modules with ``finetune``."""
    import torch
    from diffusers import DiffusionPipeline

    from generation.pipelines.tiny import build_tiny_animation_model, save_atomically

    from .spec import DatasetSpec, TrainingSpec
    from .train import train

    _deterministic()
    started = time.perf_counter()
    start = work / f"{model.name}-start"
    build_tiny_animation_model(
        start,
        seed=model.seed,
        base_path=out / "sticker-base",
        vae_path=work / ANIMATION_VAE,
        **model.adapter,
    )
    export = write_clip_export(work / f"{model.name}-clips", model, scale.clips)
    steps = scale.student_steps if model.role == "student" else scale.teacher_steps
    run = work / f"{model.name}-run"
    result = train(
        TrainingSpec(
            recipe="finetune",
            base_model=str(start),
            datasets=[DatasetSpec(role="train", path=str(export))],
            output_dir=str(run),
            params={
                "seed": model.seed,
                "max_train_steps": steps,
                # 5e-4 left the motion modules copying the still sticker into every frame after
                # 1,500 steps; at 1e-3 a one-motion teacher moves after 1,000 (README).
                "learning_rate": 1e-3,
                "lr_warmup_steps": min(100, steps // 10),
                "lr_scheduler": "constant_with_warmup",
                "train_batch_size": 4,
                "method": "motion",
                "validation_samples": 0,
                "checkpointing_steps": steps,
                "logging_steps": max(1, steps // 20),
            },
            device="cpu",
        )
    )
    pipe = DiffusionPipeline.from_pretrained(result.output_dir, dtype=torch.float32)
    # The trained motion modules live inside the UNet (UNetMotionModel); a separate copy as
    # ``motion_adapter`` would only double their size on disk.
    pipe.register_modules(motion_adapter=None)
    pipe.to(dtype=torch.float16)
    path = save_atomically(pipe, out / model.name)
    _log(model.name, {"steps": steps, "seconds": round(time.perf_counter() - started, 1)})
    return path


# Manifest -----------------------------------------------------------------------------------


def _code_of(source: str) -> str:
    """The code of a module without its docstrings and comments (its AST, dumped).

    Rewording a docstring or reformatting cannot change a weight, so it must not make the
    committed models look stale; any change to what runs does.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0].value if isinstance(node.body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def source_fingerprint(root: Path = REPO_ROOT) -> str:
    """SHA-256 over the code that determines the weights, with the scale it runs at."""
    digest = hashlib.sha256()
    for pattern in SOURCE_PATTERNS:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(_code_of(path.read_text(encoding="utf-8")).encode())
    digest.update(json.dumps(asdict(FULL), sort_keys=True).encode())
    return digest.hexdigest()


def file_hashes(out: Path) -> dict[str, str]:
    return {
        path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def scrub_configs(out: Path) -> None:
    """Drop ``_name_or_path`` (the folder a component was loaded from) from every config.

    It names the build's scratch folder, which differs per build and machine; the weights and
    every other key are what the models are.
    """
    for path in sorted(out.rglob("*.json")):
        if path.name == MANIFEST:
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "_name_or_path" in data:
            del data["_name_or_path"]
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_manifest(out: Path) -> dict[str, Any]:
    import diffusers
    import torch

    models = {"sticker-base": ("image", "base")}
    for model in ANIMATION_MODELS:
        models[model.name] = ("animation", model.role)
    manifest = {
        "source_fingerprint": source_fingerprint(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "models": {name: {"kind": kind, "role": role} for name, (kind, role) in models.items()},
        "files": file_hashes(out),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


# Entry point --------------------------------------------------------------------------------


def _run_parallel(out: Path, work: Path, stages: list[list[str]], quick: bool) -> None:
    """Run one process per ``stages`` entry (``--stage`` and its own arguments), one thread each."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # The base's process group talks over loopback only.
        "GLOO_SOCKET_IFNAME": "lo",
    }
    command = [sys.executable, "-m", "training_bridge.recipes.world_models"]
    command += ["--out", str(out), "--work", str(work)] + (["--quick"] if quick else [])
    processes = [subprocess.Popen([*command, "--stage", *stage], env=env) for stage in stages]
    failed = [
        " ".join(stage) for stage, process in zip(stages, processes, strict=True) if process.wait()
    ]
    if failed:
        raise SystemExit(f"building {', '.join(failed)} failed")


def _data_parallel_process(out: Path, work: Path, scale: Scale, stage: str, rank: int) -> None:
    """Process ``rank`` of the data-parallel ``stage`` (``sticker-base`` or ``anim-vae``)."""
    import torch.distributed as dist

    from .pretrain import Shard

    dist.init_process_group(
        "gloo",
        init_method=f"file://{work / f'{stage}.rendezvous'}",
        rank=rank,
        world_size=BASE_PROCESSES,
    )
    try:
        shard = Shard(rank, BASE_PROCESSES)
        if stage == "sticker-base":
            build_sticker_base(out, scale, shard)
        else:
            build_animation_vae(out, scale, work, shard)
    finally:
        dist.destroy_process_group()


def build_all(out: Path, *, quick: bool, work: Path | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    own_work = work is None
    work = work or Path(out.parent / f".{out.name}-work")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    try:
        for stage in ("sticker-base", ANIMATION_VAE):
            ranks = [[stage, "--rank", str(rank)] for rank in range(BASE_PROCESSES)]
            _run_parallel(out, work, ranks, quick)
        # Teachers and student all start from the base, so they train side by side.
        _run_parallel(out, work, [[m.name] for m in ANIMATION_MODELS], quick)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    scrub_configs(out)
    manifest = write_manifest(out)
    _log(
        "done",
        {"seconds": round(time.perf_counter() - started, 1), "files": len(manifest["files"])},
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the path only")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--stage",
        choices=["sticker-base", ANIMATION_VAE, *(m.name for m in ANIMATION_MODELS)],
        default=None,
    )
    parser.add_argument(
        "--rank", type=int, default=0, help="the process of a data-parallel --stage"
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    from .train import quiet_libraries

    quiet_libraries()
    if args.stage in ("sticker-base", ANIMATION_VAE):
        _data_parallel_process(args.out, args.work, scale, args.stage, args.rank)
    elif args.stage:
        model = next(m for m in ANIMATION_MODELS if m.name == args.stage)
        build_animation_model(args.out, model, scale, args.work)
    else:
        build_all(args.out, quick=args.quick, work=args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
