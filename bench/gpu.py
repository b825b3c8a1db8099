"""The generation path on a GPU: sticker throughput against a bare diffusers call, 8-frame
animation latency per animation model, peak GPU memory.

Runs only where CUDA is present; on a CPU machine it prints one JSON line saying it skipped and
exits 0 (so `make bench` runs it everywhere). Models: the committed default models
(``generation/world/weights``), or any diffusers folder given with ``--image`` / ``--animation``.
Everything runs in float16 on ``cuda``.

    python bench/gpu.py [--quick] [--image DIR] [--animation DIR ...] [--steps N] [--repeats R]

Stickers, per batch size (8 and 16): the platform's wrapper (``generate_stickers``: input
checks, one generator per seed, the pipeline call, conversion to RGBA images) against the bare
``pipe(...)`` call with the same prompts, seeds and settings and numpy output; candidates/s of
each and their ratio. Animations: ``generate_animations`` of one 64x64 sticker into 8 frames at
each model's default steps, median latency over ``--repeats`` runs after a warm-up. Peak memory:
``torch.cuda.max_memory_allocated`` over the whole run.

Last line: {"bench": "gpu", "device": "<card>", "stickers": {"8": {...}, "16": {...}},
"animation_latency_s": {model: s}, "peak_memory_mb": …} or {"bench": "gpu", "skipped": "…"}.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

from _common import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH_SIZES = (8, 16)


def _timed(call, repeats: int) -> float:
    """Median wall seconds of ``call()`` over ``repeats`` runs after one warm-up, with the GPU
    synchronised around each run (kernels are asynchronous)."""
    import torch

    call()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sticker_figures(folder: Path, params: dict, repeats: int) -> dict:
    import torch

    from generation.pipelines import generate_stickers, load_pipeline
    from generation.pipelines.image import make_generators

    loaded = load_pipeline(str(folder), kind="image", device="cuda", dtype=torch.float16)
    figures = {}
    for size in BATCH_SIZES:
        prompts = [f"a happy red cat number {i}" for i in range(size)]
        seeds = list(range(size))

        def platform(prompts=prompts, seeds=seeds):
            generate_stickers(loaded, prompts=prompts, seeds=seeds, **params)

        def bare(prompts=prompts, seeds=seeds):
            loaded.pipe(
                prompt=prompts, generator=make_generators(seeds), output_type="np", **params
            )

        platform_s, bare_s = _timed(platform, repeats), _timed(bare, repeats)
        figures[str(size)] = {
            "platform_per_s": round(size / platform_s, 2),
            "bare_per_s": round(size / bare_s, 2),
            "platform_bare_ratio": round(platform_s / bare_s, 3),
        }
    return figures


def animation_latency(folder: Path, params: dict, repeats: int) -> float:
    import torch

    from generation.pipelines import generate_animations, load_pipeline
    from generation.world.render import render_sticker
    from generation.world.sampling import sample_spec, stream_rng

    loaded = load_pipeline(str(folder), kind="animation", device="cuda", dtype=torch.float16)
    source = render_sticker(sample_spec(stream_rng("demo", 0), style="sticker"))

    def animate():
        generate_animations(
            loaded, source_images=[source], prompts=["a cat bouncing"], seeds=[0], **params
        )

    return round(_timed(animate, repeats), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run each, for CI")
    parser.add_argument("--image", type=Path, help="a diffusers text-to-image folder")
    parser.add_argument("--animation", type=Path, action="append", help="an animation folder")
    parser.add_argument("--steps", type=int, help="sampling steps (default: each model's)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        emit({"bench": "gpu", "skipped": "no CUDA device on this machine"})
        return
    from generation.world.defaults import INFERENCE, WEIGHTS_DIR, read_manifest

    repeats = args.repeats or (1 if args.quick else 5)
    image = args.image or WEIGHTS_DIR / "sticker-base"
    image_params = dict(INFERENCE["sticker-base"][0])
    animations = {path.name: path for path in args.animation or []}
    if not animations:
        manifest = read_manifest(WEIGHTS_DIR)
        animations = {
            name: WEIGHTS_DIR / name
            for name, described in manifest["models"].items()
            if described["kind"] == "animation"
        }
    if args.steps:
        image_params["num_inference_steps"] = args.steps
    torch.cuda.reset_peak_memory_stats()
    stickers = sticker_figures(image, image_params, repeats)
    latency = {}
    for name, folder in animations.items():
        params = dict(INFERENCE.get(name, INFERENCE["anim-teacher-a"])[0])
        if args.steps:
            params["num_inference_steps"] = args.steps
        latency[name] = animation_latency(folder, params, repeats)
    emit(
        {
            "bench": "gpu",
            "device": torch.cuda.get_device_name(0),
            "image_model": str(image.name),
            "steps": image_params["num_inference_steps"],
            "repeats": repeats,
            "stickers": stickers,
            "animation_latency_s": latency,
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        }
    )


if __name__ == "__main__":
    main()
