"""Reading a version for export: its manifest in chunks and its stored files, checked against
the manifest checksums, in batches the writers take."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count, Max, Q, Sum

from generation.models import frame_key
from training_bridge.exports.columns import (
    LABEL_COLUMNS,
    OPTIONAL_ANIMATION_COLUMNS,
    ExportColumns,
    export_columns,
)
from training_bridge.exports.writers import ExportBatch
from training_bridge.models import (
    DatasetEntry,
    DatasetVersion,
)
from training_bridge.versions import ENTRY_JSON_COLUMNS, MANIFEST_COLUMNS


class ExportInputError(Exception):
    """A stored file is missing or no longer matches its manifest checksum."""


_READ_SIZE = 1 << 16


class StorageReader:
    """Reads stored files: straight from disk when storage is a local folder, else through the
    storage API. ``os.open``/``os.read`` take about 7 µs for a small sticker where
    ``Storage.open(...).read()`` takes about 40 µs; at 100,000 files a format that is most of
    an export's time."""

    def __init__(self):
        try:
            root = default_storage.path("")
        except NotImplementedError:
            root = None
        # Opening relative to the media folder's descriptor spares the kernel the walk down
        # from / on every one of 100,000 files.
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if root else None

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def read(self, key: str) -> bytes:
        try:
            if self._root_fd is None:
                with default_storage.open(key, "rb") as fh:
                    return fh.read()
            fd = os.open(key, os.O_RDONLY, dir_fd=self._root_fd)
            try:
                data = os.read(fd, _READ_SIZE)
                if len(data) == _READ_SIZE:
                    parts = [data]
                    while chunk := os.read(fd, 1 << 20):
                        parts.append(chunk)
                    data = b"".join(parts)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            raise ExportInputError(f"The stored file {key} cannot be read ({exc}).") from exc


def dataset_info(version: DatasetVersion) -> dict:
    """``dataset.json``: what the training side checks before it trains."""
    return {
        "dataset_version_id": version.pk,
        "purpose": version.purpose,
        "kind": version.kind,
        "manifest_sha256": version.manifest_sha256,
        "entry_count": version.entry_count,
        "rule": version.rule_snapshot.get("name"),
        "number": version.number,
        "train_count": version.train_count,
        "validation_count": version.validation_count,
    }


def version_profile(version: DatasetVersion) -> tuple[ExportColumns, dict[str, int]]:
    """The typed columns of the version's exports (see ``exports.columns``) and the bytes of
    each split's sticker or animation files (a dataset card's ``num_bytes``).

    One scan of the whole manifest, so that every part of an export writes the same schema:
    entries grouped by their label values (a version repeats a few), with what they fill."""
    groups = (
        DatasetEntry.objects.filter(version=version)
        .order_by()
        .values("split", "file_ext", *LABEL_COLUMNS)
        .annotate(
            n_teacher=Count("pk", filter=~Q(teacher="")),
            n_source=Count("pk", filter=Q(source_candidate__isnull=False) & ~Q(source_file_key="")),
            n_frames=Count("pk", filter=~Q(frames_prefix="")),
            n_motion_score=Count("motion_score"),
            max_frames=Max("frame_count", filter=~Q(frames_prefix="")),
            size=Sum("candidate__file_size"),
        )
    )
    label_values = {name: [] for name in LABEL_COLUMNS}
    filled, extensions, max_frames, sizes = set(), set(), 0, {}
    for group in groups:
        for name in LABEL_COLUMNS:
            label_values[name].append(group[name])
        filled |= {name for name in OPTIONAL_ANIMATION_COLUMNS if group[f"n_{name}"]}
        extensions.add(group["file_ext"])
        max_frames = max(max_frames, group["max_frames"] or 0)
        sizes[group["split"]] = sizes.get(group["split"], 0) + (group["size"] or 0)
    columns = export_columns(
        kind=version.kind,
        label_values=label_values,
        filled=filled,
        extensions=extensions,
        max_frames=max_frames,
    )
    return columns, sizes


EXPORT_READ_CHUNK = 5000


def _manifest_chunks(version: DatasetVersion, start: int, stop: int) -> Iterator[list[tuple]]:
    """The manifest in order, ``EXPORT_READ_CHUNK`` rows per query by position range.

    Raw SQL with the JSON columns as text: they are written out as they are, and Django's
    JSONField would decode each of them (about 5 µs a row). Short range queries hold no cursor
    or transaction open for the length of an export.
    """
    cast = "::text" if connection.vendor == "postgresql" else ""
    columns = ", ".join(
        f"COALESCE({c}{cast}, 'null')" if c in ENTRY_JSON_COLUMNS else c for c in MANIFEST_COLUMNS
    )
    sql = (
        f"SELECT {columns} FROM {DatasetEntry._meta.db_table} "
        "WHERE version_id = %s AND position >= %s AND position < %s ORDER BY position"
    )
    for first in range(start, stop, EXPORT_READ_CHUNK):
        with connection.cursor() as cursor:
            cursor.execute(sql, [version.pk, first, min(stop, first + EXPORT_READ_CHUNK)])
            rows = cursor.fetchall()
        if rows:
            yield rows


EXPORT_BATCH_BYTES = 32 << 20


def export_batches(
    version: DatasetVersion, reader: StorageReader, start: int = 0, stop: int | None = None
) -> Iterator[ExportBatch]:
    """The version's entries (manifest positions [start, stop)) in manifest order with their
    bytes, a batch at a time.

    A batch holds at most ``EXPORT_READ_CHUNK`` entries and stops growing once its files pass
    ``EXPORT_BATCH_BYTES``, so memory stays bounded for large animations too. Each file is
    checked against the sha256 the manifest recorded; a changed or missing file stops the
    export rather than exporting something other than the version.
    """
    stop = version.entry_count if stop is None else stop
    for rows in _manifest_chunks(version, start, stop):
        (
            candidate_ids,
            splits,
            captions,
            file_keys,
            file_sha256s,
            file_exts,
            labels,
            confidences,
            labels_all,
            confidences_all,
            scores,
            n_judgments,
            model_versions,
            seeds,
            prompts,
            teachers,
            source_ids,
            source_keys,
            frames_prefixes,
            frame_counts,
            motion_scores,
        ) = zip(*rows, strict=True)
        extras = any(source_keys) or any(frames_prefixes)
        start = 0
        while start < len(rows):
            datas, sources, frames = _read_files(
                reader,
                start,
                file_keys,
                source_ids,
                source_keys,
                frames_prefixes,
                frame_counts,
                extras=extras,
            )
            end = start + len(datas)
            part = slice(start, end)
            digests = [hashlib.sha256(data).hexdigest() for data in datas]
            if digests != list(file_sha256s[part]):
                i = next(i for i, d in enumerate(digests) if d != file_sha256s[start + i])
                raise ExportInputError(
                    f"Candidate {candidate_ids[start + i]}'s file {file_keys[start + i]} no "
                    "longer matches the checksum in the manifest."
                )
            yield ExportBatch(
                candidate_id=candidate_ids[part],
                split=splits[part],
                ext=file_exts[part],
                sha256=file_sha256s[part],
                caption=captions[part],
                label_json=labels[part],
                confidence=confidences[part],
                labels_json=labels_all[part],
                confidences_json=confidences_all[part],
                scores_json=scores[part],
                n_judgments=n_judgments[part],
                model_version=model_versions[part],
                seed=seeds[part],
                prompt=prompts[part],
                teacher=teachers[part],
                motion_score=motion_scores[part],
                frame_count=frame_counts[part],
                data=datas,
                source_candidate_id=[
                    sid if data is not None else None
                    for sid, data in zip(source_ids[part], sources, strict=True)
                ],
                source_data=sources,
                frames=frames,
            )
            start = end


def _read_files(reader, start, file_keys, source_ids, source_keys, prefixes, counts, *, extras):
    """Files from entry ``start`` on until the batch's byte budget is spent: (files, sources,
    frame lists)."""
    read = reader.read
    datas: list[bytes] = []
    sources: list[bytes | None] = []
    frames: list[list[bytes]] = []
    total = 0
    for i in range(start, len(file_keys)):
        data = read(file_keys[i])
        datas.append(data)
        total += len(data)
        if extras:
            source = None
            if source_ids[i] is not None and source_keys[i]:
                source = read(source_keys[i])
                total += len(source)
            sources.append(source)
            prefix = prefixes[i]
            entry_frames = [read(frame_key(prefix, k)) for k in range(counts[i])] if prefix else []
            total += sum(map(len, entry_frames))
            frames.append(entry_frames)
        if total >= EXPORT_BATCH_BYTES:
            break
    if not extras:
        sources = [None] * len(datas)
        frames = [[]] * len(datas)
    return datas, sources, frames
