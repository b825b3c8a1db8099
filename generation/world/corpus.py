"""Write the weak corpus of the sticker world in a layout the platform's weak import reads.

    python -m generation.world.corpus --out PATH --count N [--animated]
        [--format folder|tar|parquet] [--start 0] [--workers W]

Item ``i`` is ``sampling.weak_sample(i)`` rendered: a 64x64 RGBA PNG, or for ``--animated`` an
8-frame animated WebP (8 fps, alpha kept). Its caption and weak labels (``weak_labels``) go
where ``training_bridge.weak`` reads them:

- ``folder``: ``PATH/`` holds ``metadata.jsonl`` (``imagefolder`` style: ``file_name``, ``text``
  and one key per label) beside the files;
- ``tar``: ``PATH`` is a WebDataset-style tar, ``<key>.png|webp`` then ``<key>.json`` (``text``
  and the labels), members sorted, with fixed owner, mode and mtime;
- ``parquet``: ``PATH`` has an ``image`` column (the ``datasets`` struct of ``bytes`` and
  ``path``), ``text``, and one column per label.

The platform computes a clip's motion score from its frames on import (and buckets it), so no
motion label is written. The ground truth of every item (its factors, which caption factor is
wrong, the motion and its smoothness) goes to ``PATH.truth.jsonl`` beside the corpus and never
into it: what the platform imports cannot tell it the truth. Items are named by their index
(``00000042.png``), so shards written with ``--start`` do not collide.

The same arguments give the same bytes, whatever ``--workers``. Everything is written under
temporary names and renamed into place at the end; a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from generation.pipelines.encode import encode_animated_webp, encode_png

from . import factors
from .render import render_animation, render_sticker
from .sampling import weak_sample
from .weak_labels import weak_labels

FORMATS = ("folder", "tar", "parquet")
FPS = 8
METADATA_NAME = "metadata.jsonl"
TRUTH_SUFFIX = ".truth.jsonl"
# Items handed to a worker at a time: large enough that pickling is noise, small enough that
# the writer is never idle for long.
CHUNK = 32
PARQUET_ROW_GROUP = 1024
MAX_WORKERS = 64


@dataclass(frozen=True)
class CorpusItem:
    """One rendered item: the file, what the platform may read, and what only evaluation may."""

    index: int
    name: str
    data: bytes
    caption: str
    labels: dict
    truth: dict


@dataclass(frozen=True)
class CorpusSummary:
    out: str
    truth: str
    file_format: str
    animated: bool
    start: int
    count: int
    bytes: int
    wrong_captions: int
    in_style: int
    sticker_like: int
    sticker_like_and_in_style: int


def item_name(index: int, *, animated: bool) -> str:
    return f"{index:08d}.{'webp' if animated else 'png'}"


def render_item(index: int, animated: bool = False) -> CorpusItem:
    """Render item ``index`` of the weak corpus (of clips where ``animated``)."""
    sample = weak_sample(index, animated=animated)
    if animated:
        frames = render_animation(sample.spec, sample.motion, smoothness=sample.smoothness)
        data = encode_animated_webp(frames, fps=FPS)
        first = frames[0]
    else:
        first = render_sticker(sample.spec)
        data = encode_png(first)
    name = item_name(index, animated=animated)
    captioned = sample.caption_spec
    truth = {
        "index": index,
        "file": name,
        "caption": sample.caption,
        **sample.spec.truth(),
        "seed": sample.spec.seed,
        "wrong_factor": sample.wrong_factor,
        "captioned": {
            "subject": captioned.subject,
            "colour": captioned.colour,
            "expression": captioned.expression,
        },
        "motion": sample.motion,
        "smoothness": sample.smoothness,
    }
    return CorpusItem(
        index=index,
        name=name,
        data=data,
        caption=sample.caption,
        labels=weak_labels(first, caption=sample.caption, data=data),
        truth=truth,
    )


def _render_packed(job: tuple[int, bool]) -> CorpusItem:
    return render_item(*job)


def render_items(start: int, count: int, *, animated: bool, workers: int) -> Iterator[CorpusItem]:
    """Items ``start`` .. ``start + count - 1`` in index order, on ``workers`` processes."""
    jobs = ((index, animated) for index in range(start, start + count))
    if workers == 1:
        yield from map(_render_packed, jobs)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        # imap keeps index order, so the output does not depend on which worker was faster.
        yield from pool.imap(_render_packed, jobs, chunksize=CHUNK)


def _row(item: CorpusItem) -> dict:
    return {"text": item.caption, **item.labels}


def _write_folder(items: Iterable[CorpusItem], path: Path) -> None:
    with open(path / METADATA_NAME, "w", encoding="utf-8") as metadata:
        for item in items:
            (path / item.name).write_bytes(item.data)
            metadata.write(json.dumps({"file_name": item.name, **_row(item)}) + "\n")


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed owner, mode and time: the archive's bytes depend only on its contents.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))


def _write_tar(items: Iterable[CorpusItem], path: Path) -> None:
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item in items:
            key = item.name.rpartition(".")[0]
            _tar_add(archive, item.name, item.data)
            _tar_add(archive, f"{key}.json", json.dumps(_row(item)).encode())


def _write_parquet(items: Iterable[CorpusItem], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("text", pa.string()),
            ("keyword", pa.string()),
            ("sticker_like", pa.bool_()),
            ("confidence", pa.float64()),
        ]
    )

    def flush(writer: pq.ParquetWriter, rows: list[CorpusItem]) -> None:
        columns = {
            "image": [{"bytes": item.data, "path": item.name} for item in rows],
            "text": [item.caption for item in rows],
            **{
                label: [item.labels[label] for item in rows]
                for label in ("keyword", "sticker_like", "confidence")
            },
        }
        writer.write_table(pa.table(columns, schema=schema))

    with pq.ParquetWriter(path, schema) as writer:
        rows: list[CorpusItem] = []
        for item in items:
            rows.append(item)
            if len(rows) == PARQUET_ROW_GROUP:
                flush(writer, rows)
                rows = []
        if rows:
            flush(writer, rows)


WRITERS = {"folder": _write_folder, "tar": _write_tar, "parquet": _write_parquet}


def truth_path(out: Path) -> Path:
    return out.with_name(out.name + TRUTH_SUFFIX)


def _temporary(out: Path, *, folder: bool) -> Path:
    """A new, uniquely named file or folder beside ``out`` (so the final rename stays on one
    file system), with the permissions a plain file or folder gets under the umask."""
    prefix = f".{out.name}."
    if folder:
        path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=out.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=out.parent)
        os.close(handle)
        path = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if folder else 0o666) & ~umask)
    return path


def _remove(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_corpus(
    out: Path,
    *,
    count: int,
    animated: bool = False,
    file_format: str = "folder",
    start: int = 0,
    workers: int = 1,
) -> CorpusSummary:
    """Write items ``start`` .. ``start + count - 1`` to ``out`` and their truth beside it.

    Assumes the arguments were checked (``check_arguments``). Writes to new temporary names in
    ``out``'s folder and renames them into place at the end (truth first, so a corpus never
    stands without its truth); on any error, interruption included, both are removed.
    """
    out = Path(out)
    truth = truth_path(out)
    tally = {"bytes": 0, "wrong": 0, "in_style": 0, "like": 0, "like_in_style": 0}

    def recorded(items: Iterable[CorpusItem], truth_file) -> Iterator[CorpusItem]:
        for item in items:
            truth_file.write(json.dumps(item.truth) + "\n")
            tally["bytes"] += len(item.data)
            tally["wrong"] += item.truth["wrong_factor"] is not None
            tally["in_style"] += item.truth["sticker_style"]
            tally["like"] += item.labels["sticker_like"]
            tally["like_in_style"] += item.labels["sticker_like"] and item.truth["sticker_style"]
            yield item

    partial = truth_partial = None
    try:
        partial = _temporary(out, folder=file_format == "folder")
        truth_partial = _temporary(truth, folder=False)
        with open(truth_partial, "w", encoding="utf-8") as truth_file:
            items = render_items(start, count, animated=animated, workers=workers)
            WRITERS[file_format](recorded(items, truth_file), partial)
        os.rename(truth_partial, truth)
        truth_partial = None
        try:
            os.rename(partial, out)
        except BaseException:
            truth.unlink(missing_ok=True)
            raise
    except BaseException:
        _remove(partial)
        _remove(truth_partial)
        raise
    return CorpusSummary(
        out=str(out),
        truth=str(truth),
        file_format=file_format,
        animated=animated,
        start=start,
        count=count,
        bytes=tally["bytes"],
        wrong_captions=tally["wrong"],
        in_style=tally["in_style"],
        sticker_like=tally["like"],
        sticker_like_and_in_style=tally["like_in_style"],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generation.world.corpus",
        description="Write the sticker world's weak corpus for the platform's weak import.",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder, tar or Parquet path")
    parser.add_argument("--count", required=True, type=int, help="items to write")
    parser.add_argument("--animated", action="store_true", help="8-frame clips, not stills")
    parser.add_argument("--format", choices=FORMATS, default="folder", dest="file_format")
    parser.add_argument("--start", type=int, default=0, help="index of the first item")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    return parser


def check_arguments(args: argparse.Namespace) -> str | None:
    """The first problem with ``args``, as "argument --name: why", or None."""
    if args.count < 1:
        return f"argument --count: has to be at least 1, not {args.count}"
    if args.start < 0:
        return f"argument --start: has to be at least 0, not {args.start}"
    if not 1 <= args.workers <= MAX_WORKERS:
        return f"argument --workers: has to be between 1 and {MAX_WORKERS}, not {args.workers}"
    out = args.out
    if not out.name or out.name in (".", ".."):
        return f"argument --out: {str(out)!r} does not name a file or folder"
    if not out.parent.is_dir():
        return f"argument --out: the folder {str(out.parent)!r} does not exist"
    for path in (out, truth_path(out)):
        if path.exists() or path.is_symlink():
            return f"argument --out: {str(path)!r} exists already"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    problem = check_arguments(args)
    if problem is not None:
        parser.error(problem)
    began = time.perf_counter()
    summary = write_corpus(
        args.out,
        count=args.count,
        animated=args.animated,
        file_format=args.file_format,
        start=args.start,
        workers=args.workers,
    )
    figures = {
        **summary.__dict__,
        "kind": "clips" if summary.animated else "images",
        "frames": factors.FRAMES if summary.animated else 1,
        "seconds": round(time.perf_counter() - began, 2),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
