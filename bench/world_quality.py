"""The default models as the sticker world's oracles judge them, on held-out prompts.

Text-to-sticker: ``sticker-base`` draws one sticker per held-out prompt (stream ``heldout``,
never seen by any training path) through the platform's own pipeline call; the oracle judges
subject, colour, expression and sticker style. Animation: every animation model animates
held-out in-style stickers with a prompt for each motion; the oracle judges the motion type.

    python bench/world_quality.py [--quick] [--models DIR]

Last line: {"bench": "world_quality", "prompts": N, "subject_and_colour": …, "style_pass": …,
"motion_accuracy": {model: {motion: …}}, "teacher_best_at": {teacher: [motions]}, …}.
Targets (issue 11): subject_and_colour in [0.45, 0.85] over 200+ prompts; style_pass ≤ 0.5;
each teacher best of the teachers at one motion or more.
"""

import argparse
import sys
import time
from pathlib import Path

from _common import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL = {"prompts": 240, "sources": 8}
QUICK = {"prompts": 12, "sources": 1}


def _load(models: Path, name: str, kind: str):
    import torch

    from generation.pipelines import load_pipeline

    return load_pipeline(str(models / name), kind=kind, device="cpu", dtype=torch.float32)


def judge_stickers(models: Path, params: dict, count: int, oracle) -> dict:
    from generation.pipelines import generate_stickers
    from generation.world.sampling import prompts

    loaded = _load(models, "sticker-base", "image")
    asked = prompts("heldout", count)
    started = time.perf_counter()
    stickers = []
    for start in range(0, count, 16):
        chunk = asked[start : start + 16]
        stickers += generate_stickers(
            loaded,
            prompts=[p.text for p in chunk],
            seeds=[start + i for i in range(len(chunk))],
            **params,
        )
    seconds = time.perf_counter() - started
    seen = oracle.predict_images([s.image for s in stickers])
    subject = [s["subject"] == p.subject for s, p in zip(seen, asked, strict=True)]
    colour = [s["colour"] == p.colour for s, p in zip(seen, asked, strict=True)]
    expression = [
        s["expression"] == p.expression
        for s, p in zip(seen, asked, strict=True)
        if p.expression is not None
    ]
    return {
        "prompts": count,
        "subject_and_colour": round(
            sum(a and b for a, b in zip(subject, colour, strict=True)) / count, 4
        ),
        "subject": round(sum(subject) / count, 4),
        "colour": round(sum(colour) / count, 4),
        "expression": round(sum(expression) / max(1, len(expression)), 4),
        "style_pass": round(sum(s["sticker_style"] == "yes" for s in seen) / count, 4),
        "seconds_per_sticker": round(seconds / count, 4),
    }


def judge_animations(models: Path, manifest: dict, sources: int, oracle) -> dict:
    from generation.pipelines import generate_animations
    from generation.world.captions import caption
    from generation.world.defaults import INFERENCE
    from generation.world.factors import MOTION_NAMES
    from generation.world.render import render_sticker
    from generation.world.sampling import sample_spec, stream_rng

    specs, texts = [], {}
    for index in range(sources):
        rng = stream_rng("heldout", 100_000 + index)
        spec = sample_spec(rng, style="sticker")
        specs.append(spec)
        texts[index] = {motion: caption(spec, rng, motion=motion) for motion in MOTION_NAMES}
    images = [render_sticker(spec) for spec in specs]
    accuracy, latency = {}, {}
    for name, described in manifest["models"].items():
        if described["kind"] != "animation":
            continue
        loaded = _load(models, name, "animation")
        params = dict(INFERENCE[name][0])
        right = dict.fromkeys(MOTION_NAMES, 0)
        started = time.perf_counter()
        for motion in MOTION_NAMES:
            made = generate_animations(
                loaded,
                source_images=images,
                prompts=[texts[i][motion] for i in range(sources)],
                seeds=list(range(sources)),
                **params,
            )
            seen = oracle.predict_animations([a.frames for a in made])
            right[motion] = sum(s["motion"] == motion for s in seen)
        latency[name] = round((time.perf_counter() - started) / (sources * len(MOTION_NAMES)), 4)
        accuracy[name] = {motion: round(n / sources, 4) for motion, n in right.items()}
    teachers = [n for n, d in manifest["models"].items() if d["role"] == "teacher"]
    best_at = {
        name: [
            motion
            for motion in MOTION_NAMES
            if all(
                accuracy[name][motion] > accuracy[other][motion]
                for other in teachers
                if other != name
            )
        ]
        for name in teachers
    }
    return {
        "sources": sources,
        "motion_accuracy": accuracy,
        "teacher_best_at": best_at,
        "seconds_per_animation": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    from generation.world.defaults import INFERENCE, WEIGHTS_DIR, read_manifest
    from generation.world.oracle import Oracle

    size = QUICK if args.quick else FULL
    models = args.models or WEIGHTS_DIR
    manifest = read_manifest(models)
    image_params = INFERENCE["sticker-base"][0]
    oracle = Oracle.load()
    figures = {"bench": "world_quality"}
    figures |= judge_stickers(models, image_params, size["prompts"], oracle)
    figures |= judge_animations(models, manifest, size["sources"], oracle)
    emit(figures)


if __name__ == "__main__":
    main()
