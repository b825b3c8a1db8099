"""Django-free reading of weak corpora: a folder, a tar archive or a Parquet file of images or
animations with captions and weak labels.

Folder and tar: either a ``metadata.jsonl`` at the top (``imagefolder`` style: one row per file,
``{"file_name": ..., "text" | "caption": ..., "labels": {...}, <other label columns>}``), or
WebDataset-style sidecars: ``<key>.png|webp|gif|jpg`` beside ``<key>.txt`` (caption) and/or
``<key>.json`` (caption and labels). Parquet: an ``image`` column (bytes, or the ``datasets``
struct of ``bytes`` and ``path``), a ``text`` or ``caption`` column; every other scalar column is
a weak label.

A bad row or file yields a ``WeakRowError`` naming it and the problem; the reader carries on with
the rest. Only a container that cannot be read at all raises ``WeakCorpusError``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageSequence, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".webp", ".gif", ".jpg", ".jpeg")
SIDECAR_EXTENSIONS = (".txt", ".json")
METADATA_NAME = "metadata.jsonl"
CAPTION_KEYS = ("text", "caption")
RESERVED_KEYS = ("file_name", "labels", *CAPTION_KEYS)
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_SIDE = 4096
MAX_FRAMES = 256
# Decoded frames are held in memory as RGBA: 64 million pixels is 256 MB.
MAX_TOTAL_PIXELS = 64_000_000
DEFAULT_FPS = 8
MAX_CAPTION_CHARS = 1000


class WeakCorpusError(ValueError):
    """The corpus as a whole cannot be read (not a tar, not Parquet, no image column)."""


class WeakFileError(ValueError):
    """One file cannot be imported; the message says why."""


@dataclass
class WeakRecord:
    name: str
    data: bytes
    caption: str
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeakRowError:
    name: str
    error: str


@dataclass
class PreparedFile:
    """A corpus file decoded and re-encoded the platform's way (RGBA PNG or animated WebP)."""

    data: bytes
    ext: str
    width: int
    height: int
    frame_count: int
    frames: list[bytes]
    motion_score: float | None
    fps: int | None
    first_frame: Image.Image


# Reading the containers ---------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _sidecar_key(name: str) -> tuple[str, str]:
    """(key, extension) the WebDataset way: the basename splits at its first dot."""
    path = PurePosixPath(name)
    stem, _, ext = path.name.partition(".")
    return str(path.parent / stem), "." + ext.lower()


def _check_labels(labels: Any, name: str) -> dict[str, Any]:
    if not isinstance(labels, dict):
        raise WeakFileError(f"{name}: 'labels' must be a JSON object.")
    for key, value in labels.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise WeakFileError(f"{name}: label {key!r} must be a string, number or boolean.")
    return labels


def _caption_and_labels(row: dict, name: str) -> tuple[str, dict]:
    caption = next((row[k] for k in CAPTION_KEYS if isinstance(row.get(k), str)), None)
    if caption is None or not caption.strip():
        raise WeakFileError(f"{name}: no caption (a non-empty 'text' or 'caption').")
    if len(caption) > MAX_CAPTION_CHARS:
        raise WeakFileError(f"{name}: the caption is over {MAX_CAPTION_CHARS} characters.")
    labels = dict(_check_labels(row.get("labels") or {}, name))
    extra = {k: v for k, v in row.items() if k not in RESERVED_KEYS}
    labels.update(_check_labels(extra, name))
    return caption.strip(), labels


def _skip(name: str, why: str) -> WeakRowError:
    return WeakRowError(name=name, error=f"{name}: skipped: {why}; only regular files are read.")


def _tar_skip_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member is not read, or None for a regular file or a directory. Links are never
    followed: a symbolic or hard link could name a file outside the archive, or one read twice."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        return "the name leaves the archive (it is absolute or holds '..')"
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    if member.isfile() or member.isdir():
        return None
    return "not a regular file"


class _Container:
    """Named files inside a folder or an archive."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def skipped(self) -> list[WeakRowError]:
        """The entries that are not read, each with why (a link, a device, a name that would
        leave the corpus); folders themselves are structure, not skipped files."""
        return []

    def read(self, name: str) -> bytes:
        raise NotImplementedError


class _Folder(_Container):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise WeakCorpusError(f"{root} is not a folder.")
        names, skipped = [], []
        for path in self.root.rglob("*"):
            name = str(path.relative_to(self.root))
            if path.is_file():
                names.append(name)
            elif path.is_symlink() and path.is_dir():
                skipped.append(_skip(name, "a symbolic link to a folder, not followed"))
            elif not path.is_dir():
                kind = "a broken symbolic link" if path.is_symlink() else "not a regular file"
                skipped.append(_skip(name, kind))
        self._names = sorted(names)
        self._skipped = sorted(skipped, key=lambda s: s.name)

    def names(self) -> list[str]:
        return self._names

    def skipped(self) -> list[WeakRowError]:
        return self._skipped

    def read(self, name: str) -> bytes:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise WeakFileError(f"{name}: the path leaves the corpus folder.")
        if not path.is_file():
            raise WeakFileError(f"{name}: no such file in the corpus.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WeakFileError(f"{name}: the file is over {MAX_FILE_BYTES // (1 << 20)} MB.")
        return path.read_bytes()


class _Tar(_Container):
    def __init__(self, path: Path):
        try:
            self._tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise WeakCorpusError(f"Not a readable tar archive: {exc}.") from exc
        self._members: dict[str, tarfile.TarInfo] = {}
        self._skipped: list[WeakRowError] = []
        for member in members:
            reason = _tar_skip_reason(member)
            if reason is not None:
                self._skipped.append(_skip(member.name, reason))
            elif member.isfile():
                self._members[member.name.removeprefix("./")] = member

    def names(self) -> list[str]:
        return list(self._members)

    def skipped(self) -> list[WeakRowError]:
        return self._skipped

    def read(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise WeakFileError(f"{name}: no such file in the archive.")
        if member.size > MAX_FILE_BYTES:
            raise WeakFileError(f"{name}: the file is over {MAX_FILE_BYTES // (1 << 20)} MB.")
        try:
            handle = self._tar.extractfile(member)
            return handle.read() if handle is not None else b""
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise WeakFileError(f"{name}: the archive member cannot be read ({exc}).") from exc

    def close(self) -> None:
        self._tar.close()


def _container_records(container: _Container) -> Iterator[WeakRecord | WeakRowError]:
    yield from container.skipped()
    names = container.names()
    if METADATA_NAME in names:
        yield from _metadata_records(container, container.read(METADATA_NAME))
        return
    present = set(names)
    for name in names:
        if not _is_image(name):
            continue
        key, _ = _sidecar_key(name)
        row: dict[str, Any] = {}
        try:
            if f"{key}.json" in present:
                try:
                    row = json.loads(container.read(f"{key}.json"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise WeakFileError(f"{key}.json is not valid JSON ({exc}).") from exc
                if not isinstance(row, dict):
                    raise WeakFileError(f"{key}.json must hold a JSON object.")
            if f"{key}.txt" in present:
                try:
                    row["text"] = container.read(f"{key}.txt").decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WeakFileError(f"{key}.txt is not UTF-8 text.") from exc
            caption, labels = _caption_and_labels(row, name)
            yield WeakRecord(name=name, data=container.read(name), caption=caption, labels=labels)
        except WeakFileError as exc:
            yield WeakRowError(name=name, error=str(exc))


def _metadata_records(container: _Container, raw: bytes) -> Iterator[WeakRecord | WeakRowError]:
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{METADATA_NAME} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield WeakRowError(name=where, error=f"{where} is not valid JSON ({exc.msg}).")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            yield WeakRowError(name=where, error=f"{where} needs a string 'file_name'.")
            continue
        name = row["file_name"].removeprefix("./")
        try:
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                raise WeakFileError(f"{name}: file_name must be a relative path inside the corpus.")
            caption, labels = _caption_and_labels(row, name)
            yield WeakRecord(name=name, data=container.read(name), caption=caption, labels=labels)
        except WeakFileError as exc:
            yield WeakRowError(name=name, error=str(exc))


def _parquet_records(path: Path) -> Iterator[WeakRecord | WeakRowError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise WeakCorpusError(f"Not a readable Parquet file: {exc}.") from exc
    columns = parquet.schema_arrow.names
    if "image" not in columns:
        raise WeakCorpusError(
            f"The Parquet file has no 'image' column (columns: {', '.join(columns)})."
        )
    if not any(k in columns for k in CAPTION_KEYS):
        raise WeakCorpusError("The Parquet file has no 'text' or 'caption' column.")
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=64):
            for row in batch.to_pylist():
                image = row.pop("image")
                name = f"row {index}"
                index += 1
                if isinstance(image, dict):
                    name = f"row {index - 1} ({image.get('path')})" if image.get("path") else name
                    image = image.get("bytes")
                try:
                    if not isinstance(image, bytes | bytearray) or not image:
                        raise WeakFileError(f"{name}: no image bytes.")
                    if len(image) > MAX_FILE_BYTES:
                        raise WeakFileError(f"{name}: the image is over 50 MB.")
                    caption, labels = _caption_and_labels(row, name)
                    yield WeakRecord(name=name, data=bytes(image), caption=caption, labels=labels)
                except WeakFileError as exc:
                    yield WeakRowError(name=name, error=str(exc))
    except (pa.ArrowException, OSError) as exc:
        yield WeakRowError(name=f"row {index}", error=f"The rest of the file is unreadable: {exc}.")


def read_corpus(path: Path, *, file_format: str) -> Iterator[WeakRecord | WeakRowError]:
    """Records and per-row errors of a corpus, in a stable order.

    Raises:
        WeakCorpusError: the folder, archive or Parquet file cannot be opened at all.
    """
    if file_format == "folder":
        yield from _container_records(_Folder(path))
    elif file_format == "tar":
        container = _Tar(path)
        try:
            yield from _container_records(container)
        finally:
            container.close()
    elif file_format == "parquet":
        yield from _parquet_records(path)
    else:
        raise ValueError(f"`file_format` has to be folder, tar or parquet but is {file_format!r}.")


# Decoding and re-encoding one file ---------------------------------------------------------------


def _open_frames(data: bytes, name: str) -> tuple[list[Image.Image], int | None]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width > MAX_SIDE or image.height > MAX_SIDE:
                raise WeakFileError(
                    f"{name}: the image is {image.width}×{image.height} pixels; at most "
                    f"{MAX_SIDE} per side."
                )
            count = getattr(image, "n_frames", 1)
            if count > MAX_FRAMES:
                raise WeakFileError(f"{name}: {count} frames; at most {MAX_FRAMES}.")
            if count * image.width * image.height > MAX_TOTAL_PIXELS:
                raise WeakFileError(
                    f"{name}: {count} frames of {image.width}×{image.height} pixels are too many "
                    f"to decode (at most {MAX_TOTAL_PIXELS:,} pixels in all)."
                )
            frames, duration = [], None
            for frame in ImageSequence.Iterator(image):
                # WebP sets a frame's duration only once that frame is loaded.
                frame.load()
                if duration is None:
                    duration = frame.info.get("duration")
                frames.append(frame.convert("RGBA"))
    except WeakFileError:
        raise
    except Image.DecompressionBombError as exc:
        raise WeakFileError(f"{name}: the image is too large to decode safely.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise WeakFileError(f"{name}: not a readable image ({exc}).") from exc
    except Exception as exc:
        # Pillow's decoders raise assorted errors on crafted or truncated data (struct.error,
        # IndexError ...); one bad file must not stop the import.
        raise WeakFileError(f"{name}: not a readable image ({type(exc).__name__}).") from exc
    return frames, duration


def prepare_file(data: bytes, *, kind: str, name: str) -> PreparedFile:
    """Decode a corpus file and re-encode it: a still becomes an RGBA PNG; an animation an
    animated WebP (alpha kept) plus one PNG per frame, with its motion score.

    Raises:
        WeakFileError: unreadable or corrupt data, too large, or the wrong kind of file.
    """
    from generation.pipelines import encode_animated_webp, encode_png, motion_score

    frames, duration = _open_frames(data, name)
    if kind == "image":
        if len(frames) != 1:
            raise WeakFileError(
                f"{name}: an image corpus takes still images; this file has {len(frames)} frames."
            )
        return PreparedFile(
            data=encode_png(frames[0]),
            ext="png",
            width=frames[0].width,
            height=frames[0].height,
            frame_count=1,
            frames=[],
            motion_score=None,
            fps=None,
            first_frame=frames[0],
        )
    if kind != "animation":
        raise ValueError(f"`kind` has to be image or animation but is {kind!r}.")
    if len(frames) < 2:
        raise WeakFileError(f"{name}: an animation needs at least 2 frames; this file has 1.")
    fps = DEFAULT_FPS
    if isinstance(duration, int | float) and duration > 0:
        fps = min(max(round(1000 / duration), 1), 60)
    try:
        encoded = encode_animated_webp(frames, fps=fps)
        score = motion_score(frames)
    except ValueError as exc:
        raise WeakFileError(f"{name}: {exc}") from exc
    return PreparedFile(
        data=encoded,
        ext="webp",
        width=frames[0].width,
        height=frames[0].height,
        frame_count=len(frames),
        frames=[encode_png(f) for f in frames],
        motion_score=score,
        fps=fps,
        first_frame=frames[0],
    )


def motion_bucket(score: float, edges: list[float]) -> int:
    """The bucket index of a motion score: 0 below ``edges[0]``, len(edges) at or above the last."""
    bucket = 0
    for edge in edges:
        if score >= edge:
            bucket += 1
    return bucket
