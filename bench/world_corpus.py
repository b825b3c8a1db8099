"""The sticker world's weak corpus: render throughput, and the time to write the 50,000-image
corpus that the platform's weak import takes.

    python bench/world_corpus.py [--quick] [--count 50000] [--format parquet] [--workers 1]

Timed, all Django-free (``generation.world``):

- images_per_s, clips_per_s: ``corpus.render_item`` in this process (render, encode as PNG or
  8-frame animated WebP, compute the weak labels) over the first 2,000 images and 400 clips
  (--quick: 200 and 40);
- write_s: ``corpus.write_corpus`` of ``--count`` images (--quick: 500) in ``--format`` on
  ``--workers`` processes, truth file included, into a scratch folder removed afterwards.

Measured on the corpus written: the share of captions wrong in one factor (the world promises
about 0.15), the share of images in sticker style (about 0.32), and how the weak
``sticker_like`` label agrees with that truth (precision and recall).
Last line: {"bench": "world_corpus", "quick", "workers", "format", "images_per_s",
"clips_per_s", "images", "write_s", "write_images_per_s", "corpus_mb", "wrong_caption_rate",
"in_style_rate", "sticker_like_rate", "sticker_like_precision", "sticker_like_recall"}.
Targets: wrong_caption_rate in 0.12-0.18; write_s for 50,000 images within 10 minutes on one
worker of the 2-core machine.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import emit

from generation.world.corpus import FORMATS, MAX_WORKERS, render_item, write_corpus


def _per_second(count: int, *, animated: bool) -> float:
    began = time.perf_counter()
    for index in range(count):
        render_item(index, animated)
    return round(count / (time.perf_counter() - began), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 images, for CI")
    parser.add_argument("--count", type=int, default=50_000, help="images in the corpus")
    parser.add_argument("--format", choices=FORMATS, default="parquet", dest="file_format")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = parser.parse_args()
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"argument --workers: has to be between 1 and {MAX_WORKERS}")
    count = 500 if args.quick else args.count
    if count < 1:
        parser.error("argument --count: has to be at least 1")

    images_per_s = _per_second(200 if args.quick else 2000, animated=False)
    clips_per_s = _per_second(40 if args.quick else 400, animated=True)

    scratch = Path(tempfile.mkdtemp(prefix="stickerloop-world-corpus-"))
    try:
        out = scratch / f"weak.{args.file_format}"
        began = time.perf_counter()
        summary = write_corpus(out, count=count, file_format=args.file_format, workers=args.workers)
        write_s = time.perf_counter() - began
        on_disk = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    emit(
        {
            "bench": "world_corpus",
            "quick": args.quick,
            "workers": args.workers,
            "format": args.file_format,
            "images_per_s": images_per_s,
            "clips_per_s": clips_per_s,
            "images": count,
            "write_s": round(write_s, 1),
            "write_images_per_s": round(count / write_s, 1),
            "corpus_mb": round(on_disk / 2**20, 1),
            "wrong_caption_rate": round(summary.wrong_captions / count, 4),
            "in_style_rate": round(summary.in_style / count, 4),
            "sticker_like_rate": round(summary.sticker_like / count, 4),
            "sticker_like_precision": round(
                summary.sticker_like_and_in_style / max(summary.sticker_like, 1), 4
            ),
            "sticker_like_recall": round(
                summary.sticker_like_and_in_style / max(summary.in_style, 1), 4
            ),
        }
    )


if __name__ == "__main__":
    main()
