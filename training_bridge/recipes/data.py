"""Reading dataset exports from disk (Hugging Face ``imagefolder`` layout), no database.

Layout, as the curation side writes it::

    <root>/dataset.json                {"dataset_version_id", "purpose", "kind",
                                        "manifest_sha256", "entry_count"}
    <root>/train/metadata.jsonl        one row per entry:
    <root>/validation/metadata.jsonl   {"file_name", "text", "candidate_id", "label",
                                        "confidence", "model_version", "seed", "prompt",
                                        "teacher", "source_file_name", "frames_dir"}

An export written in parts has ``<root>/<split>/<part>/metadata.jsonl`` files instead, one
per part. Paths in a row are relative to the folder of its ``metadata.jsonl`` (as
``imagefolder`` reads them). Images are RGBA PNGs; animations are animated WebPs whose frames
also lie in ``frames_dir`` as ``frame-000.png``, ``frame-001.png``, ...
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .spec import ANIMATION, DatasetFacts, SpecError, read_dataset_facts

SPLITS = ("train", "validation")
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Entry:
    """One training example: a sticker image, or an animation's frames, and its caption."""

    text: str
    file: Path
    frames: tuple[Path, ...]
    teacher: str | None
    candidate_id: int | None


@dataclass
class ExportedDataset:
    """One dataset export, read: its facts, role and the entries of one split."""

    facts: DatasetFacts
    role: str
    split: str
    entries: list[Entry]

    @property
    def teacher_counts(self) -> dict[str, int]:
        """Entries per teacher model version (``"none"`` for rows without one), sorted by name."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            key = entry.teacher or "none"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))


def _frame_files(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(folder.glob("frame-*.png")))


def read_export(
    path: str | Path, *, role: str, split: str = "train", min_frames: int | None = None
) -> ExportedDataset:
    """Read one split of the export at ``path`` and check that every file it names exists.

    ``min_frames`` (animations) requires each entry to have at least that many frames.
    A missing validation split reads as empty; a missing or empty train split is an error.

    Raises:
        SpecError: (field ``datasets``) unreadable dataset.json or metadata.jsonl, a row
            without ``file_name`` or ``text``, a missing file, too few frames, or no entries.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` has to be one of {', '.join(SPLITS)} but is {split!r}.")
    root = Path(path)
    facts = read_dataset_facts(root)
    folder = root / split
    # A many-part export has one metadata file per part, in <split>/<part>/.
    metadata_files = sorted(
        path
        for path in (folder / "metadata.jsonl", *folder.glob("*/metadata.jsonl"))
        if path.is_file()
    )
    if not metadata_files:
        if split == "validation":
            return ExportedDataset(facts=facts, role=role, split=split, entries=[])
        raise SpecError("datasets", f"The dataset export {root} has no {split}/metadata.jsonl.")
    entries = []
    for metadata in metadata_files:
        entries += _read_metadata(metadata, facts, min_frames)
    if not entries and split == "train":
        raise SpecError("datasets", f"The dataset export {root} has no training entries.")
    return ExportedDataset(facts=facts, role=role, split=split, entries=entries)


def _read_metadata(metadata: Path, facts: DatasetFacts, min_frames: int | None) -> list[Entry]:
    """The rows of one ``metadata.jsonl``; paths in them are relative to its folder."""
    entries = []
    base = metadata.parent
    with metadata.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(
                    "datasets", f"{metadata} line {number} is not valid JSON: {exc.msg}."
                ) from exc
            if not isinstance(row.get("file_name"), str) or not isinstance(row.get("text"), str):
                raise SpecError(
                    "datasets", f"{metadata} line {number} needs string `file_name` and `text`."
                )
            file = base / row["file_name"]
            if not file.is_file():
                raise SpecError("datasets", f"{metadata} line {number}: {file} does not exist.")
            frames: tuple[Path, ...] = ()
            if facts.kind == ANIMATION:
                if row.get("frames_dir"):
                    frames = _frame_files(base / row["frames_dir"])
                if min_frames is not None:
                    available = len(frames) or _webp_frame_count(file)
                    if available < min_frames:
                        raise SpecError(
                            "datasets",
                            f"{metadata} line {number}: the animation has {available} frames, "
                            f"fewer than the {min_frames} the run trains on.",
                        )
            teacher = row.get("teacher")
            entries.append(
                Entry(
                    text=row["text"],
                    file=file,
                    frames=frames,
                    teacher=str(teacher) if teacher else None,
                    candidate_id=row.get("candidate_id"),
                )
            )
    return entries


def _webp_frame_count(file: Path) -> int:
    with Image.open(file) as image:
        return getattr(image, "n_frames", 1)


def composite(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """The RGB picture of an RGBA image laid over ``background``."""
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def load_pixels(file: Path | io.BytesIO, *, resolution: int, channels: int) -> np.ndarray:
    """One image as a (channels, resolution, resolution) float32 array in [-1, 1].

    4 channels keep the alpha (the tiny sticker model's VAE encodes RGBA); 3 channels lay the
    sticker over white first, since an RGB VAE would read transparent pixels' colour as content.
    """
    with Image.open(file) as image:
        image.load()
        picture = image.convert("RGBA") if channels == 4 else composite(image)
    if picture.size != (resolution, resolution):
        picture = picture.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(picture, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def frame_indices(available: int, wanted: int) -> list[int]:
    """``wanted`` frame indices spread evenly over ``available`` frames, first and last kept."""
    if wanted >= available:
        return list(range(available))
    if wanted == 1:
        return [0]
    return [round(i * (available - 1) / (wanted - 1)) for i in range(wanted)]


def load_frames(entry: Entry, *, resolution: int, num_frames: int, channels: int) -> np.ndarray:
    """An animation as a (num_frames, channels, resolution, resolution) float32 array.

    Frames come from ``frames_dir`` when the export has them, else from the WebP itself; a
    longer animation is subsampled evenly (a student may be trained on fewer frames).
    """
    if entry.frames:
        picked = [entry.frames[i] for i in frame_indices(len(entry.frames), num_frames)]
        arrays = [load_pixels(f, resolution=resolution, channels=channels) for f in picked]
    else:
        arrays = []
        with Image.open(entry.file) as image:
            count = getattr(image, "n_frames", 1)
            for index in frame_indices(count, num_frames):
                image.seek(index)
                buffer = io.BytesIO()
                image.convert("RGBA").save(buffer, format="PNG")
                buffer.seek(0)
                arrays.append(load_pixels(buffer, resolution=resolution, channels=channels))
    return np.stack(arrays)
