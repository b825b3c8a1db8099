"""Generation overhead: the platform path against the bare pipeline, same candidates, one run.

Platform: batch rows → planning task (``default``) → chunk task (``gpu``) on a real Celery worker
with a warm pipeline cache → PNG encode → storage → candidate rows and counters. Bare: the same
pipeline wrapper called in a loop in this process, same prompts, seeds and batch size.

The platform runs the batch twice: as written, and with a template prompt enhancer, which the
chunk applies to each group's prompts before the one pipeline call. The bare loop runs the raw
prompts and then the enhanced ones (the text the model reads with the enhancer), so each ratio
compares the same pipeline inputs.

    python bench/generation_overhead.py [--quick]

Last line: {"bench": "generation_overhead", "candidates": N, "platform_s": …, "bare_s": …,
"overhead_ratio": …, "enhanced_platform_s": …, "enhanced_bare_s": …,
"enhanced_overhead_ratio": …, "template_enhance_us_per_prompt": …}. Target: both ratios ≤ 1.10
at batch size 8 on the tiny models.
"""

import argparse
import sys
import tempfile
import time
import timeit
from pathlib import Path

from _common import emit, setup_django, start_worker, stop_worker, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, for CI")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads on both sides; on 2 cores, two threads against the worker's own "
        "database and broker traffic stall on stragglers and the figure measures contention",
    )
    args = parser.parse_args()
    prompts = args.prompts or (4 if args.quick else 32)
    seeds = list(range(2 if args.quick else args.seeds))

    env = setup_django("bench_generation")
    env["STICKERLOOP_GENERATION_BATCH_SIZE"] = str(args.batch_size)
    env["STICKERLOOP_GENERATION_CHUNK_SIZE"] = "64"
    env["OMP_NUM_THREADS"] = str(args.threads)
    from generation.models import GenerationBatch
    from generation.pipelines import generate_stickers, load_pipeline, select_device
    from generation.services.batches import generation_batch_create
    from generation.services.enhancers import prompt_enhancer_create, template_enhancer
    from generation.services.model_versions import default_models_register
    from generation.services.prompts import prompt_set_import

    models_root = Path(tempfile.mkdtemp(prefix="stickerloop-bench-models-"))
    model = {m.name: m for m in default_models_register(root=models_root)}["sticker-base"]
    texts = [f"a sticker of thing number {i}, smiling" for i in range(prompts)]
    warm_set, _ = prompt_set_import(name="warm", content="warm up\n", file_format="text")
    bench_set, _ = prompt_set_import(name="bench", content="\n".join(texts), file_format="text")
    params = {"num_inference_steps": args.steps}
    enhancer = prompt_enhancer_create(
        name="bench-sticker-art",
        kind="template",
        template="a sticker of {prompt}",
        style_phrases=["thick white outline", "flat colours"],
    )
    enhanced_texts = template_enhancer(enhancer).enhance(texts)

    worker = start_worker("default,gpu", env, Path(tempfile.mkdtemp()) / "worker.log")
    try:

        def run(prompt_set, batch_seeds, batch_enhancer=None) -> float:
            started = time.perf_counter()
            batch = generation_batch_create(
                kind="sticker",
                prompt_set=prompt_set,
                model_versions=[model],
                seeds=batch_seeds,
                params=params,
                enhancer=batch_enhancer,
            )
            wait_until(
                lambda: GenerationBatch.objects.filter(pk=batch.pk, status="succeeded").exists(),
                timeout=1800,
            )
            return time.perf_counter() - started

        # Warm the worker's pipeline cache: the target excludes the one-time model load.
        run(warm_set, [0])
        platform_s = run(bench_set, seeds)
        enhanced_platform_s = run(bench_set, seeds, enhancer)
    finally:
        stop_worker(worker)

    import torch

    torch.set_num_threads(args.threads)
    device, dtype = select_device(None)
    loaded = load_pipeline(model.uri, kind="image", device=device, dtype=dtype)
    generate_stickers(
        loaded,
        prompts=["warm up"],
        seeds=[0],
        num_inference_steps=args.steps,
        guidance_scale=5.0,
        width=64,
        height=64,
    )

    def bare(prompts: list[str]) -> float:
        items = [(t, s) for t in prompts for s in seeds]
        started = time.perf_counter()
        for i in range(0, len(items), args.batch_size):
            group = items[i : i + args.batch_size]
            generate_stickers(
                loaded,
                prompts=[t for t, _ in group],
                seeds=[s for _, s in group],
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                width=64,
                height=64,
            )
        return time.perf_counter() - started

    bare_s = bare(texts)
    enhanced_bare_s = bare(enhanced_texts)
    applied = template_enhancer(enhancer)
    rounds = 200
    enhance_s = timeit.timeit(lambda: applied.enhance(texts[: args.batch_size]), number=rounds)
    items = [(t, s) for t in texts for s in seeds]
    emit(
        {
            "bench": "generation_overhead",
            "candidates": len(items),
            "batch_size": args.batch_size,
            "threads": args.threads,
            "platform_s": round(platform_s, 3),
            "bare_s": round(bare_s, 3),
            "overhead_ratio": round(platform_s / bare_s, 3),
            "enhanced_platform_s": round(enhanced_platform_s, 3),
            "enhanced_bare_s": round(enhanced_bare_s, 3),
            "enhanced_overhead_ratio": round(enhanced_platform_s / enhanced_bare_s, 3),
            "template_enhance_us_per_prompt": round(
                1e6 * enhance_s / (rounds * min(args.batch_size, len(texts))), 2
            ),
        }
    )


if __name__ == "__main__":
    sys.exit(main())
