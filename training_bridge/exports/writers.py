"""Django-free writers of dataset exports: imagefolder archive, WebDataset shards, Parquet files.

Writers take ``ExportBatch`` values: runs of consecutive manifest entries held as columns, with
their bytes. ``exports.reading`` cuts batches at a few thousand entries or a few tens of
megabytes of files, whichever comes first, so memory stays bounded whatever the dataset's size.
Working a batch at a time rather than an entry at a time matters at this scale: at 100,000
entries every microsecond spent per entry is a tenth of a second per format, and GNU tar copies
the same files at about 3.5 µs each.

Every format writes the columns of ``exports.columns`` with the same types, and its dataset
card (``exports.card``). Every output is byte-for-byte reproducible, so the same version
exported twice gives the same checksum.
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

from training_bridge.exports.columns import IMAGE_ARROW, ExportColumns
from training_bridge.exports.tar import OutputFile, TarWriter, describe_file

SPLITS = ("train", "validation")
CARD_NAME = "README.md"


def load_arrow() -> None:
    """Build one small array: pyarrow imports pandas (0.2 s) the first time it converts Python
    values, and a worker had better do that as it starts than in its first export."""
    pa.array([0], pa.int64())


def json_string(value: str | None) -> str:
    return "null" if value is None else _encode_string(value)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _label_members(name: str, texts: Sequence[str], as_text: bool) -> list[str]:
    """``"name":value`` for a label column: its JSON as it is, or, for a column of mixed types,
    that JSON as a string."""
    if as_text:
        return [f'"{name}":{"null" if t == "null" else _encode_string(t)}' for t in texts]
    return [f'"{name}":{t}' for t in texts]


@dataclass(slots=True)
class ExportBatch:
    """Consecutive manifest entries as columns of equal length, with their bytes.

    The label columns arrive as JSON text (``label_json``, ``labels_json`` ...) straight from
    the manifest; the JSON formats write them as they are (their types were checked for the
    whole version by ``exports.columns``): decoding and re-encoding them cost more than reading
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
    model_version: Sequence[str]
    seed: Sequence[int]
    prompt: Sequence[str]
    teacher: Sequence[str]
    motion_score: Sequence[float | None]
    frame_count: Sequence[int]
    data: Sequence[bytes]
    source_candidate_id: Sequence[int | None]
    source_data: Sequence[bytes | None]
    frames: Sequence[Sequence[bytes]]
    # Worked out once for all the writers of a pass (they share one ExportColumns).
    _records: tuple[ExportColumns, list[str]] | None = field(
        default=None, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.candidate_id)

    def check(self) -> None:
        for name in self.__slots__:
            if name != "_records" and len(getattr(self, name)) != len(self):
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

    def records(self, columns: ExportColumns) -> list[str]:
        """Each entry's columns other than files, in order, as the members of a JSON object
        (no braces): a WebDataset sample's ``.json``, the middle of an imagefolder row."""
        if self._records is None or self._records[0] is not columns:
            self._records = (columns, self._format_records(columns))
        return self._records[1]

    def _format_records(self, columns: ExportColumns) -> list[str]:
        enc = _encode_string
        pieces = [
            [
                f'"text":{enc(caption)},"split":"{split}","candidate_id":{cid}'
                for caption, split, cid in zip(
                    self.caption, self.split, self.candidate_id, strict=True
                )
            ]
        ]
        if "label" in columns:
            pieces.append(_label_members("label", self.label_json, columns["label"].json_text))
        pieces.append([f'"confidence":{confidence!r}' for confidence in self.confidence])
        for name, texts in (
            ("labels", self.labels_json),
            ("confidences", self.confidences_json),
            ("scores", self.scores_json),
        ):
            if name in columns:
                pieces.append(_label_members(name, texts, columns[name].json_text))
        pieces.append(
            [
                f'"n_judgments":{n},"model_version":{enc(model)},"seed":{seed},'
                f'"prompt":{enc(prompt)},"sha256":"{sha}"'
                for n, model, seed, prompt, sha in zip(
                    self.n_judgments,
                    self.model_version,
                    self.seed,
                    self.prompt,
                    self.sha256,
                    strict=True,
                )
            ]
        )
        if "teacher" in columns:
            pieces.append([f'"teacher":{enc(teacher)}' for teacher in self.teacher])
        if "source_candidate_id" in columns:
            pieces.append(
                [
                    f'"source_candidate_id":{"null" if s is None else s}'
                    for s in self.source_candidate_id
                ]
            )
        if "frame_count" in columns:
            pieces.append([f'"frame_count":{n}' for n in self.frame_count])
        if "motion_score" in columns:
            pieces.append(
                [f'"motion_score":{"null" if m is None else repr(m)}' for m in self.motion_score]
            )
        if len(pieces) == 1:
            return pieces[0]
        return [",".join(row) for row in zip(*pieces, strict=True)]


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


def _write_card(folder: Path, card: str) -> OutputFile:
    path = folder / CARD_NAME
    path.write_bytes(card.encode())
    return describe_file(path)


class ImagefolderWriter:
    """A Hugging Face ``imagefolder`` layout inside one tar archive.

    Layout (paths inside the archive)::

        README.md                                         the dataset card
        dataset.json                                      what training checks
        train/metadata.jsonl, validation/metadata.jsonl   (a split only when it has entries)
        <split>/<key>.png | <split>/<key>.webp            the sticker or the animated WebP
        <split>/frames/<key>/frame-000.png ...            animations: every frame
        <split>/sources/<source>.png                      animations: the source sticker

    A part of a many-part export puts its files and its own ``metadata.jsonl`` in
    ``<split>/<part>/``; ``datasets`` reads every metadata file, each for its own folder, and
    every part carries the same card and ``dataset.json``.

    A metadata row holds ``file_name`` and then the columns of ``exports.columns`` in order,
    with ``source_file_name`` and ``frames_file_names`` for the files of an animation, and
    ``frames_dir`` (the folder of its frames, which the training recipes read).
    ``datasets.load_dataset("imagefolder", data_dir=<extracted>)`` turns the file names into
    the ``image``, ``source`` and ``frames`` columns. An empty validation split is left out
    because ``datasets`` refuses a split without rows. Metadata lines wait in memory (up to
    4 MB per split, then in a temporary file) until the end of the archive.
    """

    def __init__(
        self,
        path: Path,
        *,
        dataset_info: dict,
        columns: ExportColumns,
        card: str,
        mtime: int = 0,
        folder: str = "",
    ):
        self._tar = TarWriter(path, mtime=mtime)
        self._info = dataset_info
        self._columns = columns
        self._card = card
        # A part of a many-part export keeps to its own folder under each split.
        self._folder = f"{folder}/" if folder else ""
        self._metadata = {split: _Spool() for split in SPLITS}
        self._counts = dict.fromkeys(SPLITS, 0)
        self._sources: dict[str, set[int]] = {split: set() for split in SPLITS}

    def add_batch(self, batch: ExportBatch) -> None:
        batch.check()
        file_names = batch.file_names()
        records = batch.records(self._columns)
        if batch.has_extras:
            names, datas, file_members = self._members_with_extras(batch, file_names)
        else:
            names = [f"{s}/{self._folder}{f}" for s, f in zip(batch.split, file_names, strict=True)]
            datas = batch.data
            file_members = self._no_extras(len(batch))
        self._tar.add_members(names, datas)
        lines = {split: [] for split in SPLITS}
        for split, file_name, record, extras in zip(
            batch.split, file_names, records, file_members, strict=True
        ):
            lines[split].append(f'{{"file_name":"{file_name}",{record}{extras}}}\n')
        for split, split_lines in lines.items():
            if split_lines:
                self._metadata[split].write("".join(split_lines).encode())
                self._counts[split] += len(split_lines)

    def _no_extras(self, count: int) -> list[str]:
        """The file members of rows without a source or frames, in a version that has them."""
        extras = ""
        if "source" in self._columns:
            extras += ',"source_file_name":null'
        if "frames" in self._columns:
            extras += ',"frames_file_names":[],"frames_dir":null'
        return [extras] * count

    def _members_with_extras(self, batch: ExportBatch, file_names: list[str]):
        names, datas, file_members = [], [], []
        has_source, has_frames = "source" in self._columns, "frames" in self._columns
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
            frame_names = [
                f"{frames_dir}/frame-{index:03d}.png" for index in range(len(batch.frames[i]))
            ]
            names += (f"{base}{name}" for name in frame_names)
            datas += batch.frames[i]
            extras = ""
            if has_source:
                extras += f',"source_file_name":{json_string(source_name)}'
            if has_frames:
                listed = ",".join(f'"{name}"' for name in frame_names)
                extras += f',"frames_file_names":[{listed}],"frames_dir":{json_string(frames_dir)}'
            file_members.append(extras)
        return names, datas, file_members

    def close(self) -> list[OutputFile]:
        self._tar.add_members(
            [CARD_NAME, "dataset.json"], [self._card.encode(), _json_bytes(self._info) + b"\n"]
        )
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
    of a many-part export starts a shard of its own), and the dataset card when ``card`` is
    given (the first part writes it).

    A sample is ``<key>.png`` or ``<key>.webp`` plus ``<key>.json`` (the columns of
    ``exports.columns`` that are not files, typed as in the other formats); an animation adds
    ``<key>.source.png`` and ``<key>.frame-000.png`` ... Keys are candidate ids, so they hold
    no dots (webdataset splits a member name at the first dot).
    """

    def __init__(
        self,
        folder: Path,
        *,
        columns: ExportColumns,
        shard_size: int,
        card: str | None,
        mtime: int = 0,
        first_shard: dict[str, int] | None = None,
    ):
        if shard_size < 1:
            raise ValueError(f"`shard_size` has to be at least 1 but is {shard_size}.")
        self._folder = Path(folder)
        self._columns = columns
        self._shard_size = shard_size
        self._card = card
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
        samples = [f"{{{record}}}".encode() for record in batch.records(self._columns)]
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
        if self._card is not None:
            self._done.append(_write_card(self._folder, self._card))
        return sorted(self._done, key=lambda f: f.name)

    def abort(self) -> None:
        for writer in self._open.values():
            writer.abort()


class _JsonValues:
    """Decoded label JSON, by text: a manifest repeats a few texts (``{"aligned": true}``)
    100,000 times, so a lookup replaces most decodes. Forgets everything past 50,000 texts."""

    def __init__(self):
        self._known: dict[str, Any] = {}

    def __call__(self, texts: Sequence[str]) -> list:
        known = self._known
        if len(known) > 50_000:
            known.clear()
        out = []
        for text in texts:
            value = known.get(text, known)
            if value is known:
                value = known[text] = json.loads(text)
            out.append(value)
        return out


def _leaf_paths(name: str, arrow_type: pa.DataType) -> list[str]:
    """Parquet's column paths under a column (``frames.list.element.bytes`` ...)."""
    if pa.types.is_struct(arrow_type):
        return [
            path
            for i in range(arrow_type.num_fields)
            for path in _leaf_paths(f"{name}.{arrow_type.field(i).name}", arrow_type.field(i).type)
        ]
    if pa.types.is_list(arrow_type):
        return _leaf_paths(f"{name}.list.element", arrow_type.value_type)
    return [name]


def _images(datas: Sequence[bytes | None], paths: Sequence[str | None]) -> pa.StructArray:
    """``datasets`` Image values (bytes and path); null where ``datas`` has None."""
    missing = [d is None for d in datas]
    return pa.StructArray.from_arrays(
        [
            pa.array([b"" if d is None else d for d in datas], pa.binary()),
            pa.array(["" if p is None else p for p in paths], pa.string()),
        ],
        fields=list(IMAGE_ARROW),
        mask=pa.array(missing, pa.bool_()) if any(missing) else None,
    )


class ParquetWriter:
    """A part's Parquet files, one per split (``train-00000-of-00002.parquet`` ...), one row
    per entry with the bytes inside, and the dataset card when ``card`` is given.

    The schema carries ``datasets``' features in its ``huggingface`` metadata, so
    ``load_dataset("parquet", ...)`` decodes ``image``, ``source`` and ``frames`` as images and
    gives every column the type of the other formats; ``stickerloop`` metadata holds
    ``dataset.json``. Each batch becomes a row group in each split it has rows of; image bytes
    are stored uncompressed (PNG and WebP are compressed already), the rest with snappy.

    ``file_names`` maps each split this part has rows of to its file's name.
    """

    def __init__(
        self,
        folder: Path,
        *,
        dataset_info: dict,
        columns: ExportColumns,
        file_names: dict[str, str],
        card: str | None,
    ):
        self._columns = columns
        self._folder = Path(folder)
        self._card = card
        self._decode = _JsonValues()
        # In column order: readers list the features as the metadata orders them.
        features = json.dumps({"info": {"features": columns.features()}}, separators=(",", ":"))
        self._schema = columns.arrow_schema(
            {b"huggingface": features.encode(), b"stickerloop": _json_bytes(dataset_info)}
        )
        paths = [p for f in self._schema for p in _leaf_paths(f.name, f.type)]
        raw = {p for p in paths if p.endswith(".bytes")}
        options = {
            "compression": {p: "none" if p in raw else "snappy" for p in paths},
            "use_dictionary": [
                name for name in ("split", "model_version", "teacher") if name in columns
            ],
        }
        self._paths = {split: self._folder / name for split, name in file_names.items()}
        self._writers: dict[str, pq.ParquetWriter] = {}
        try:
            for split, path in self._paths.items():
                self._writers[split] = pq.ParquetWriter(str(path), self._schema, **options)
        except BaseException:
            self.abort()
            raise

    def add_batch(self, batch: ExportBatch) -> None:
        batch.check()
        table = pa.record_batch(self._arrays(batch), schema=self._schema)
        splits = set(batch.split)
        missing = splits - set(self._writers)
        if missing:
            raise ValueError(f"This part has no Parquet file for the {missing.pop()} split.")
        for split in SPLITS:
            if split not in splits:
                continue
            rows = table if len(splits) == 1 else table.filter([s == split for s in batch.split])
            self._writers[split].write_batch(rows)

    def _arrays(self, batch: ExportBatch) -> list[pa.Array]:
        columns = self._columns
        file_paths = [
            f"{split}/{name}" for split, name in zip(batch.split, batch.file_names(), strict=True)
        ]
        values: dict[str, Any] = {
            "image": _images(batch.data, file_paths),
            "text": batch.caption,
            "split": batch.split,
            "candidate_id": batch.candidate_id,
            "confidence": batch.confidence,
            "n_judgments": batch.n_judgments,
            "model_version": batch.model_version,
            "seed": batch.seed,
            "prompt": batch.prompt,
            "sha256": batch.sha256,
            "teacher": batch.teacher,
            "source_candidate_id": batch.source_candidate_id,
            "frame_count": batch.frame_count,
            "motion_score": batch.motion_score,
        }
        for name, texts in (
            ("label", batch.label_json),
            ("labels", batch.labels_json),
            ("confidences", batch.confidences_json),
            ("scores", batch.scores_json),
        ):
            if name in columns:
                values[name] = (
                    [None if t == "null" else t for t in texts]
                    if columns[name].json_text
                    else self._decode(texts)
                )
        if "source" in columns:
            values["source"] = _images(
                batch.source_data,
                [
                    None if name is None else f"{batch.split[i]}/{name}"
                    for i, name in enumerate(map(batch.source_file_name, range(len(batch))))
                ],
            )
        if "frames" in columns:
            values["frames"] = self._frames(batch)
        return [
            v if isinstance(v, pa.Array) else pa.array(v, c.arrow_type)
            for c, v in ((c, values[c.name]) for c in columns.columns)
        ]

    @staticmethod
    def _frames(batch: ExportBatch) -> pa.ListArray:
        offsets, datas, paths = [0], [], []
        for i, frames in enumerate(batch.frames):
            folder = f"{batch.split[i]}/{batch.frames_dir(i)}"
            datas += frames
            paths += (f"{folder}/frame-{k:03d}.png" for k in range(len(frames)))
            offsets.append(len(datas))
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _images(datas, paths))

    def close(self) -> list[OutputFile]:
        for writer in self._writers.values():
            writer.close()
        outputs = [describe_file(path) for path in self._paths.values()]
        if self._card is not None:
            outputs.append(_write_card(self._folder, self._card))
        return sorted(outputs, key=lambda f: f.name)

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
