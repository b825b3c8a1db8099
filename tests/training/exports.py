"""Dataset exports on disk in the curation layout (``imagefolder``), for the recipe tests.

Pictures are drawn, not generated: a coloured disc on a transparent background per sticker,
and a disc moving to the right over 8 frames per animation, so building one takes milliseconds.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from generation.pipelines import encode_animated_webp, encode_png

COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 180, 20), (150, 60, 200)]


def sticker(index: int, size: int = 64, shift: int = 0) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    r = size // 4 + index % 3
    cx, cy = size // 2 + shift - 6, size // 2
    draw.ellipse(
        (cx - r, cy - r, cx + r, cy + r),
        fill=(*COLOURS[index % len(COLOURS)], 255),
        outline=(255, 255, 255, 255),
        width=2,
    )
    return image


def _write_split(root: Path, split: str, rows: list[dict]) -> None:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _row(index: int, file_name: str, *, text: str, teacher=None, frames_dir=None, source=None):
    return {
        "file_name": file_name,
        "text": text,
        "candidate_id": 1000 + index,
        "label": "yes",
        "confidence": 0.9,
        "model_version": teacher or "sticker-base",
        "seed": index,
        "prompt": text,
        "teacher": teacher,
        "source_file_name": source,
        "frames_dir": frames_dir,
    }


def _finish(root: Path, *, purpose: str, kind: str, dataset_version_id: int, count: int) -> Path:
    manifest = b"".join(
        (root / split / "metadata.jsonl").read_bytes()
        for split in ("train", "validation")
        if (root / split / "metadata.jsonl").exists()
    )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "dataset_version_id": dataset_version_id,
                "purpose": purpose,
                "kind": kind,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                "entry_count": count,
            }
        )
    )
    return root


def image_export(
    root: Path,
    *,
    purpose: str = "alignment",
    train: int = 6,
    validation: int = 2,
    dataset_version_id: int = 1,
    caption: str = "a sticker of a disc",
) -> Path:
    """An image dataset export with ``train`` and ``validation`` RGBA PNG entries."""
    for split, count, offset in (("train", train, 0), ("validation", validation, train)):
        rows = []
        for i in range(offset, offset + count):
            name = f"images/{i:04d}.png"
            path = root / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_png(sticker(i)))
            rows.append(_row(i, name, text=f"{caption} number {i}"))
        _write_split(root, split, rows)
    return _finish(
        root,
        purpose=purpose,
        kind="image",
        dataset_version_id=dataset_version_id,
        count=train + validation,
    )


def animation_export(
    root: Path,
    *,
    teachers: tuple[str, ...] = ("anim-teacher-a", "anim-teacher-b"),
    train: int = 6,
    validation: int = 2,
    frames: int = 8,
    purpose: str = "teacher_selection",
    dataset_version_id: int = 2,
    with_frames_dir: bool = True,
) -> Path:
    """An animation export: animated WebPs, their frames, and the source stickers."""
    for split, count, offset in (("train", train, 0), ("validation", validation, train)):
        rows = []
        for i in range(offset, offset + count):
            teacher = teachers[i % len(teachers)] if teachers else None
            source = f"sources/{i:04d}.png"
            (root / split / "sources").mkdir(parents=True, exist_ok=True)
            (root / split / source).write_bytes(encode_png(sticker(i)))
            images = [sticker(i, shift=2 * f) for f in range(frames)]
            frames_dir = f"frames/{i:04d}"
            if with_frames_dir:
                (root / split / frames_dir).mkdir(parents=True, exist_ok=True)
                for f, image in enumerate(images):
                    (root / split / frames_dir / f"frame-{f:03d}.png").write_bytes(
                        encode_png(image)
                    )
            name = f"animations/{i:04d}.webp"
            (root / split / "animations").mkdir(parents=True, exist_ok=True)
            (root / split / name).write_bytes(encode_animated_webp(images, fps=8))
            rows.append(
                _row(
                    i,
                    name,
                    text=f"the disc slides right {i}",
                    teacher=teacher,
                    frames_dir=frames_dir if with_frames_dir else None,
                    source=source,
                )
            )
        _write_split(root, split, rows)
    return _finish(
        root,
        purpose=purpose,
        kind="animation",
        dataset_version_id=dataset_version_id,
        count=train + validation,
    )


def pixels_equal(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))
