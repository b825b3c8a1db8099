"""Django-free writers of dataset exports: imagefolder archive, WebDataset shards, Parquet.

Writers take ``ExportBatch`` values: runs of consecutive manifest entries held as columns, with
their bytes. ``exports.reading`` cuts batches at a few thousand entries or a few tens of
megabytes of files, whichever comes first, so memory stays bounded whatever the dataset's size.
Working a batch at a time rather than an entry at a time matters at this scale: at 100,000
entries every microsecond spent per entry is a tenth of a second per format, and GNU tar copies
the same files at about 3.5 µs each.

Every archive is byte-for-byte reproducible (``exports.tar``), so the same version exported twice
gives the same checksum.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_string
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from training_bridge.exports.tar import OutputFile, TarWriter, describe_file

SPLITS = ("train", "validation")


def load_arrow() -> None:
    """Build one small array: pyarrow imports pandas (0.2 s) the first time it converts Python
    values, and a worker had better do that as it starts than in its first export."""
    pa.array([0], pa.int64())


def json_string(value: str | None) -> str:
    return "null" if value is None else _encode_string(value)


@dataclass(slots=True)
class ExportBatch:
    """Consecutive manifest entries as columns of equal length, with their bytes.

    The label columns arrive as JSON text (``label_json``, ``labels_json`` ...) straight from
    the manifest and go out as they are: decoding and re-encoding them cost more than reading
    the files. ``source_data`` is None and ``frames`` empty for an entry without them.
    """

    candidate_id: Sequence[int]
    split: Sequence[str]
    ext: Sequence[str]
    sha256: Sequence[str]
    caption: Sequence[str]
    label_json: Sequence[str]
    confidence: Sequence[float]
    labels_json: Sequence[str]
    confidences_json: Sequence[str]
    scores_json: Sequence[str]
    n_judgments: Sequence[int]
    model_version: Sequence[str | None]
    seed: Sequence[int]
    prompt: Sequence[str]
    teacher: Sequence[str | None]
    motion_score: Sequence[float | None]
    frame_count: Sequence[int]
    data: Sequence[bytes]
    source_candidate_id: Sequence[int | None]
    source_data: Sequence[bytes | None]
    frames: Sequence[Sequence[bytes]]
    # Worked out once for all the writers of a pass.
    _common: list[str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.candidate_id)

    def check(self) -> None:
        for name in self.__slots__:
            if name != "_common" and len(getattr(self, name)) != len(self):
                raise ValueError(f"column `{name}` has {len(getattr(self, name))} values.")
        if not set(self.split) <= set(SPLITS):
            bad = next(s for s in self.split if s not in SPLITS)
            raise ValueError(f"`split` has to be one of {', '.join(SPLITS)} but is {bad!r}.")

    @property
    def has_extras(self) -> bool:
        """Whether any entry brings a source sticker or frames (animations do)."""
        return any(d is not None for d in self.source_data) or any(self.frames)

    def file_names(self) -> list[str]:
        return [f"{c}.{e}" for c, e in zip(self.candidate_id, self.ext, strict=True)]

    def source_file_name(self, i: int) -> str | None:
        if self.source_data[i] is None:
            return None
        return f"sources/{self.source_candidate_id[i]}.png"

    def frames_dir(self, i: int) -> str | None:
        return f"frames/{self.candidate_id[i]}" if self.frames[i] else None

    def common_json(self) -> list[str]:
        """The columns every format carries, as the members of a JSON object (no braces)."""
        if self._common is None:
            self._common = self._format_common()
        return self._common

    def _format_common(self) -> list[str]:
        enc = _encode_string
        return [
            f'"text":{enc(caption)},"candidate_id":{cid},"label":{label},'
            f'"confidence":{confidence!r},'
            f'"model_version":{"null" if model is None else enc(model)},"seed":{seed},'
            f'"prompt":{enc(prompt)},"teacher":{"null" if teacher is None else enc(teacher)}'
            for caption, cid, label, confidence, model, seed, prompt, teacher in zip(
                self.caption,
                self.candidate_id,
                self.label_json,
                self.confidence,
                self.model_version,
                self.seed,
                self.prompt,
                self.teacher,
                strict=True,
            )
        ]


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


class _Spool:
    """Lines kept in memory up to ``limit`` bytes, then in a temporary file."""

    def __init__(self, limit: int = 4 << 20):
        self._parts: list[bytes] = []
        self._size = 0
        self._spilled = 0
        self._limit = limit
        self._file: BinaryIO | None = None

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._limit:
            self._spill()

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._file.write(b"".join(self._parts))
        self._spilled += self._size
        self._parts = []
        self._size = 0

    @property
    def total(self) -> int:
        return self._spilled + self._size

    def chunks(self) -> Iterable[bytes]:
        """Everything written, in order, 1 MB at a time from disk."""
        if self._file is not None:
            self._file.seek(0)
            while chunk := self._file.read(1 << 20):
                yield chunk
        if self._parts:
            yield b"".join(self._parts)

    def close(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()


class ImagefolderWriter:
    """A Hugging Face ``imagefolder`` layout inside one tar archive.

    Layout (paths inside the archive)::

        dataset.json
        train/metadata.jsonl, validation/metadata.jsonl   (a split only when it has entries)
        <split>/<key>.png | <split>/<key>.webp            the sticker or the animated WebP
        <split>/frames/<key>/frame-000.png ...            animations: every frame
        <split>/sources/<source>.png                      animations: the source sticker

    A part of a many-part export puts its files and its own ``metadata.jsonl`` in
    ``<split>/<part>/``; ``datasets`` reads every metadata file, each for its own folder.

    A metadata row holds ``file_name``, ``text``, ``candidate_id``, ``label``, ``confidence``,
    ``model_version``, ``seed``, ``prompt``, ``teacher``, ``source_file_name``, ``frames_dir``,
    ``sha256`` and ``labels_json`` (every label, as a JSON string).
    ``datasets.load_dataset("imagefolder", data_dir=<extracted>)`` reads it: ``file_name`` and
    ``source_file_name`` become the ``image`` and ``source`` columns. An empty validation split is
    left out because ``datasets`` refuses a split without rows. Metadata lines wait in memory
    (up to 4 MB per split, then in a temporary file) until the end of the archive.
    """

    def __init__(self, path: Path, *, dataset_info: dict, mtime: int = 0, folder: str = ""):
        self._tar = TarWriter(path, mtime=mtime)
        self._info = dataset_info
        # A part of a many-part export keeps to its own folder under each split.
        self._folder = f"{folder}/" if folder else ""
        self._metadata = {split: _Spool() for split in SPLITS}
        self._counts = dict.fromkeys(SPLITS, 0)
        self._sources: dict[str, set[int]] = {split: set() for split in SPLITS}

    def add_batch(self, batch: ExportBatch) -> None:
        batch.check()
        file_names = batch.file_names()
        common = batch.common_json()
        if batch.has_extras:
            names, datas, sources, frame_dirs = self._members_with_extras(batch, file_names)
        else:
            names = [f"{s}/{self._folder}{f}" for s, f in zip(batch.split, file_names, strict=True)]
            datas = batch.data
            sources = frame_dirs = ["null"] * len(batch)
        self._tar.add_members(names, datas)
        lines = {split: [] for split in SPLITS}
        for split, file_name, shared, source, frames_dir, sha, labels in zip(
            batch.split,
            file_names,
            common,
            sources,
            frame_dirs,
            batch.sha256,
            batch.labels_json,
            strict=True,
        ):
            lines[split].append(
                f'{{"file_name":"{file_name}",{shared},"source_file_name":{source},'
                f'"frames_dir":{frames_dir},"sha256":"{sha}",'
                f'"labels_json":{_encode_string(labels)}}}\n'
            )
        for split, split_lines in lines.items():
            if split_lines:
                self._metadata[split].write("".join(split_lines).encode())
                self._counts[split] += len(split_lines)

    def _members_with_extras(self, batch: ExportBatch, file_names: list[str]):
        names, datas, sources, frame_dirs = [], [], [], []
        for i, split in enumerate(batch.split):
            base = f"{split}/{self._folder}"
            names.append(f"{base}{file_names[i]}")
            datas.append(batch.data[i])
            source_name = batch.source_file_name(i)
            source_id = batch.source_candidate_id[i]
            if source_name is not None and source_id not in self._sources[split]:
                self._sources[split].add(source_id)
                names.append(f"{base}{source_name}")
                datas.append(batch.source_data[i])
            frames_dir = batch.frames_dir(i)
            for index, frame in enumerate(batch.frames[i]):
                names.append(f"{base}{frames_dir}/frame-{index:03d}.png")
                datas.append(frame)
            sources.append(json_string(source_name))
            frame_dirs.append(json_string(frames_dir))
        return names, datas, sources, frame_dirs

    def close(self) -> list[OutputFile]:
        self._tar.add_members(["dataset.json"], [_json_bytes(self._info) + b"\n"])
        for split in SPLITS:
            spool = self._metadata[split]
            if self._counts[split]:
                self._tar.add_chunks(
                    f"{split}/{self._folder}metadata.jsonl", spool.total, spool.chunks()
                )
            spool.close()
        return [self._tar.close()]

    def abort(self) -> None:
        for spool in self._metadata.values():
            spool.close()
        self._tar.abort()


class WebDatasetWriter:
    """WebDataset shards ``<split>-000000.tar``, at most ``shard_size`` samples each (each part
    of a many-part export starts a shard of its own).

    A sample is ``<key>.png`` or ``<key>.webp`` plus ``<key>.json`` (every manifest field, labels
    as objects); an animation adds ``<key>.source.png`` and ``<key>.frame-000.png`` ... Keys are
    candidate ids, so they hold no dots (webdataset splits a member name at the first dot).
    """

    def __init__(
        self,
        folder: Path,
        *,
        shard_size: int,
        mtime: int = 0,
        first_shard: dict[str, int] | None = None,
    ):
        if shard_size < 1:
            raise ValueError(f"`shard_size` has to be at least 1 but is {shard_size}.")
        self._folder = Path(folder)
        self._shard_size = shard_size
        self._mtime = mtime
        self._open: dict[str, TarWriter] = {}
        self._in_shard = dict.fromkeys(SPLITS, 0)
        # A later part of a many-part export numbers its shards on from the earlier parts'.
        self._shard_index = {split: (first_shard or {}).get(split, 0) for split in SPLITS}
        self._done: list[OutputFile] = []

    def _shard(self, split: str) -> TarWriter:
        writer = self._open.get(split)
        if writer is not None and self._in_shard[split] >= self._shard_size:
            self._done.append(writer.close())
            self._shard_index[split] += 1
            self._in_shard[split] = 0
            writer = None
        if writer is None:
            name = f"{split}-{self._shard_index[split]:06d}.tar"
            writer = self._open[split] = TarWriter(self._folder / name, mtime=self._mtime)
        return writer

    def add_batch(self, batch: ExportBatch) -> None:
        batch.check()
        common = batch.common_json()
        samples = [
            f'{{{shared},"split":"{split}","labels":{labels},"confidences":{confs},'
            f'"scores":{scores},"n_judgments":{n},"sha256":"{sha}",'
            f'"motion_score":{"null" if motion is None else repr(motion)},'
            f'"frame_count":{frames},'
            f'"source_candidate_id":{"null" if source is None else source}}}'.encode()
            for shared, split, labels, confs, scores, n, sha, motion, frames, source in zip(
                common,
                batch.split,
                batch.labels_json,
                batch.confidences_json,
                batch.scores_json,
                batch.n_judgments,
                batch.sha256,
                batch.motion_score,
                batch.frame_count,
                batch.source_candidate_id,
                strict=True,
            )
        ]
        extras = batch.has_extras
        for split in SPLITS:
            rows = [i for i, s in enumerate(batch.split) if s == split]
            while rows:
                shard = self._shard(split)
                room = self._shard_size - self._in_shard[split]
                taken, rows = rows[:room], rows[room:]
                names, datas = [], []
                for i in taken:
                    key = batch.candidate_id[i]
                    names += (f"{key}.{batch.ext[i]}", f"{key}.json")
                    datas += (batch.data[i], samples[i])
                    if extras:
                        if batch.source_data[i] is not None:
                            names.append(f"{key}.source.png")
                            datas.append(batch.source_data[i])
                        for index, frame in enumerate(batch.frames[i]):
                            names.append(f"{key}.frame-{index:03d}.png")
                            datas.append(frame)
                shard.add_members(names, datas)
                self._in_shard[split] += len(taken)

    def close(self) -> list[OutputFile]:
        for split in SPLITS:
            writer = self._open.pop(split, None)
            if writer is not None:
                self._done.append(writer.close())
        return sorted(self._done, key=lambda f: f.name)

    def abort(self) -> None:
        for writer in self._open.values():
            writer.abort()


class ParquetWriter:
    """One Parquet file, one row per entry, with the bytes inside.

    ``image`` and ``source_image`` follow the ``datasets`` Image convention (a struct of
    ``bytes`` and ``path``); ``frames`` lists an animation's PNG frames. ``label``, ``labels``,
    ``confidences`` and ``scores`` are JSON text because their types differ between questions.
    Each batch becomes a row group, written as arrays; image bytes are stored uncompressed
    (PNG and WebP are compressed already), the rest with snappy.
    """

    def __init__(self, path: Path, *, dataset_info: dict):
        self._image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        self._schema = pa.schema(
            [
                ("candidate_id", pa.int64()),
                ("split", pa.string()),
                ("file_name", pa.string()),
                ("text", pa.string()),
                ("label", pa.string()),
                ("confidence", pa.float64()),
                ("labels", pa.string()),
                ("confidences", pa.string()),
                ("scores", pa.string()),
                ("model_version", pa.string()),
                ("seed", pa.int64()),
                ("prompt", pa.string()),
                ("teacher", pa.string()),
                ("source_candidate_id", pa.int64()),
                ("source_file_name", pa.string()),
                ("sha256", pa.string()),
                ("motion_score", pa.float64()),
                ("frame_count", pa.int32()),
                ("image", self._image),
                ("source_image", self._image),
                ("frames", pa.list_(pa.binary())),
            ],
            metadata={b"stickerloop": _json_bytes(dataset_info)},
        )
        raw = {"image.bytes", "source_image.bytes", "frames.list.element"}
        compression = {
            name: "none" if name in raw else "snappy"
            for name in self._schema.names
            + [
                "image.bytes",
                "image.path",
                "source_image.bytes",
                "source_image.path",
                "frames.list.element",
            ]
        }
        self.path = Path(path)
        self._writer = pq.ParquetWriter(
            str(self.path),
            self._schema,
            compression=compression,
            use_dictionary=[
                "split",
                "label",
                "labels",
                "confidences",
                "scores",
                "model_version",
                "teacher",
            ],
        )

    def add_batch(self, batch: ExportBatch) -> None:
        batch.check()
        file_names = [
            f"{split}/{name}" for split, name in zip(batch.split, batch.file_names(), strict=True)
        ]
        source_names = [
            None if name is None else f"{batch.split[i]}/{name}"
            for i, name in enumerate(map(batch.source_file_name, range(len(batch))))
        ]
        image = pa.StructArray.from_arrays(
            [pa.array(batch.data, pa.binary()), pa.array(file_names, pa.string())],
            fields=list(self._image),
        )
        missing = [data is None for data in batch.source_data]
        source_image = pa.StructArray.from_arrays(
            [
                pa.array([b"" if d is None else d for d in batch.source_data], pa.binary()),
                pa.array(["" if n is None else n for n in source_names], pa.string()),
            ],
            fields=list(self._image),
            mask=pa.array(missing, pa.bool_()),
        )
        columns = {
            "candidate_id": batch.candidate_id,
            "split": batch.split,
            "file_name": file_names,
            "text": batch.caption,
            "label": batch.label_json,
            "confidence": batch.confidence,
            "labels": batch.labels_json,
            "confidences": batch.confidences_json,
            "scores": batch.scores_json,
            "model_version": batch.model_version,
            "seed": batch.seed,
            "prompt": batch.prompt,
            "teacher": batch.teacher,
            "source_candidate_id": batch.source_candidate_id,
            "source_file_name": source_names,
            "sha256": batch.sha256,
            "motion_score": batch.motion_score,
            "frame_count": batch.frame_count,
        }
        arrays = [
            pa.array(columns[field.name], field.type)
            for field in self._schema
            if field.name in columns
        ]
        arrays += [image, source_image, pa.array(batch.frames, pa.list_(pa.binary()))]
        self._writer.write_batch(pa.record_batch(arrays, schema=self._schema))

    def close(self) -> list[OutputFile]:
        self._writer.close()
        return [describe_file(self.path)]

    def abort(self) -> None:
        self._writer.close()
