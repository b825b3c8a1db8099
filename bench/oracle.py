"""Oracle judges: per-factor accuracy on fresh renders that no training path draws.

Renders 2,000 stickers and 700 clips from stream ``oracle-eval`` (mixed in style; clips move in
one of the motions or stand still, smoothly or jerkily) and asks the committed oracles
(``Oracle.predict_images`` / ``predict_animations``) what they show. No database needed.

    python bench/oracle.py [--quick] [--images N] [--clips N] [--weights FOLDER]

Last line: {"bench": "oracle", "images", "clips", "accuracy": {factor: share right},
"min_accuracy", "sticker_style_accuracy", "render_s", "judge_s", "weights_current"}.
``sticker_style_accuracy`` scores the derived yes/no against the spec's ``in_style``;
``weights_current`` says whether the renderer and oracle sources are those the weights were
trained with. Target: every factor's accuracy ≥ 0.95.
"""

import argparse
import sys
import time

from _common import emit

from generation.world.oracle import Oracle
from generation.world.oracle.data import clip_draw, clip_truth, image_spec, image_truth
from generation.world.render import render_animation, render_sticker

STREAM = "oracle-eval"


def _share_right(predicted: list[dict], truths: list[dict]) -> dict[str, float]:
    pairs = list(zip(predicted, truths, strict=True))
    return {
        head: round(sum(p[head] == t[head] for p, t in pairs) / len(pairs), 4) for head in truths[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, for CI")
    parser.add_argument("--images", type=int)
    parser.add_argument("--clips", type=int)
    parser.add_argument("--weights", help="a folder of oracle weights (default: the committed)")
    args = parser.parse_args()
    n_images = args.images or (300 if args.quick else 2_000)
    n_clips = args.clips or (100 if args.quick else 700)
    oracle = Oracle.load(args.weights)

    started = time.perf_counter()
    specs = [image_spec(STREAM, index) for index in range(n_images)]
    images = [render_sticker(spec) for spec in specs]
    draws = [clip_draw(STREAM, index) for index in range(n_clips)]
    clips = [render_animation(draw.spec, draw.motion, smoothness=draw.smoothness) for draw in draws]
    render_s = time.perf_counter() - started

    started = time.perf_counter()
    predicted_images = oracle.predict_images(images)
    predicted_clips = oracle.predict_animations(clips)
    judge_s = time.perf_counter() - started

    accuracy = {
        **_share_right(predicted_images, [image_truth(spec) for spec in specs]),
        **_share_right(predicted_clips, [clip_truth(draw) for draw in draws]),
    }
    style_right = sum(
        (p["sticker_style"] == "yes") == spec.in_style
        for p, spec in zip(predicted_images, specs, strict=True)
    )
    emit(
        {
            "bench": "oracle",
            "images": n_images,
            "clips": n_clips,
            "accuracy": accuracy,
            "min_accuracy": min(accuracy.values()),
            "sticker_style_accuracy": round(style_right / n_images, 4),
            "render_s": round(render_s, 2),
            "judge_s": round(judge_s, 2),
            "weights_current": oracle.trained_with_current_sources,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
