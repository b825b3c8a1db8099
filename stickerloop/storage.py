"""Writing stored objects so that nobody takes a part for the whole, on a local folder and a
bucket alike: the one owner of staged writes, commits by name, complete markers and folder
copies.

Everything goes through Django's storage API (``default_storage``), except the two things it
has no word for: a server-side copy in a bucket (boto3's managed copy, multipart for large
objects) and a rename in a folder (``os.replace``).

- ``save_committed`` writes an object under a staging key beside its final one, then commits it
  by name. A writer killed halfway leaves at most a staging object (a bucket's multipart upload
  that fails is aborted by boto3; one whose process dies is never an object at all). Staging
  keys are deterministic, so the next run of the same work overwrites and removes them.
- A set of objects (an export, a model folder) is complete when its ``_COMPLETE.json`` marker
  is there: written last, it lists every file with its size and checksum. Readers ask for it
  (``read_complete_marker``) and take nothing without it.
- A set with no marker whose run will never finish it (killed and never run again, failed,
  cancelled) is abandoned: the beat sweep of the app that owns the set finds it with
  ``incomplete_sets`` and removes it with ``incomplete_set_remove`` once
  ``incomplete_set_abandoned`` says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

STAGING_SUFFIX = ".staging"
COMPLETE_MARKER = "_COMPLETE.json"

logger = logging.getLogger(__name__)


def is_bucket() -> bool:
    """Whether media live in a bucket (django-storages' S3 storage) rather than a folder."""
    return hasattr(default_storage, "bucket_name")


def staging_key(key: str) -> str:
    """Where ``key`` is written before it is committed: ``.<name>.staging`` beside it, so it
    shares the final key's prefix (and its access rules: exports stay under ``exports/``), and
    in a folder the commit is a rename within one directory. No staging folder: parts of one
    export run at once, and one part removing a shared folder as it emptied would pull it from
    under another part's write."""
    head, _, name = key.rpartition("/")
    staged = f".{name}{STAGING_SUFFIX}"
    return f"{head}/{staged}" if head else staged


def _commit(staged: str, key: str) -> None:
    if is_bucket():
        bucket = default_storage.bucket
        bucket.Object(key).copy({"Bucket": bucket.name, "Key": staged})
        default_storage.delete(staged)
        return
    os.replace(default_storage.path(staged), default_storage.path(key))


def save_committed(key: str, content: File) -> None:
    """Store ``content`` at ``key`` (overwriting): written under ``staging_key(key)``, then
    committed by name, so ``key`` is never a part of an object."""
    staged = staging_key(key)
    saved = default_storage.save(staged, content)
    if saved != staged:
        raise OSError(f"Storage wrote {saved} instead of {staged}.")
    _commit(staged, key)


def delete_keys(keys: list[str]) -> None:
    for key in keys:
        default_storage.delete(key)


def write_complete_marker(prefix: str, files: list[dict]) -> None:
    """Mark the objects under ``prefix`` complete: call after every one of ``files`` (each with
    ``name``, ``size``, ``sha256``) is committed."""
    body = json.dumps({"files": files}, indent=1, sort_keys=True).encode()
    save_committed(f"{prefix}{COMPLETE_MARKER}", ContentFile(body))


def read_complete_marker(prefix: str) -> dict | None:
    """The marker of a complete object set under ``prefix``, or None when there is none (never
    written, or its writer was stopped before the end)."""
    key = f"{prefix}{COMPLETE_MARKER}"
    if not default_storage.exists(key):
        return None
    with default_storage.open(key, "rb") as fh:
        return json.loads(fh.read())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_upload(folder: Path, prefix: str, *, skip=None) -> list[dict]:
    """Copy every file of a local folder under ``prefix`` (``<prefix><relative path>``; those
    that ``skip(relative path)`` says to leave out are left out), each committed by name, then
    the complete marker listing them. An earlier marker is removed first, so a copy over an
    older one that stops halfway is not taken for complete."""
    default_storage.delete(f"{prefix}{COMPLETE_MARKER}")
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if skip is not None and skip(name):
            continue
        with path.open("rb") as fh:
            save_committed(f"{prefix}{name}", File(fh, name=name))
        files.append({"name": name, "size": path.stat().st_size, "sha256": file_sha256(path)})
    write_complete_marker(prefix, files)
    return files


def folder_download(prefix: str, target: Path, *, skip=None) -> dict:
    """Copy the complete object set under ``prefix`` into a new local folder ``target`` (files
    that ``skip(name)`` says to leave out are left out), checking each file's size and checksum
    against the marker; return the marker. Filled in a temporary folder beside ``target`` and
    renamed into place, so a process that finds ``target`` finds all of it.

    Raises:
        FileNotFoundError: no complete object set under ``prefix``.
        OSError: a file does not match its marker, or the copy failed.
    """
    marker = read_complete_marker(prefix)
    if marker is None:
        raise FileNotFoundError(f"{prefix} has no {COMPLETE_MARKER}: it is missing or incomplete")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
    try:
        for entry in marker["files"]:
            name = entry["name"]
            if skip is not None and skip(name):
                continue
            if ".." in name.split("/") or name.startswith("/"):
                raise OSError(f"{prefix}{COMPLETE_MARKER} names a file outside it: {name!r}")
            local = staging / name
            local.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(f"{prefix}{name}", "rb") as src, local.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            if (local.stat().st_size, file_sha256(local)) != (entry["size"], entry["sha256"]):
                raise OSError(f"{prefix}{name} does not match its checksum in {COMPLETE_MARKER}")
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its copy is the same files.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return marker


@dataclass(frozen=True)
class IncompleteSet:
    """The objects under one set's prefix (an export's, a model folder's) when it has no
    complete marker: what a run staged and committed before it stopped, or is still writing."""

    prefix: str
    owner: str
    keys: tuple[str, ...]
    last_written: datetime


def _objects_under(root: str) -> Iterator[tuple[str, datetime]]:
    """(key, last written) of every object whose key starts with ``root`` (a folder's prefix
    ending in ``/``)."""
    if is_bucket():
        for obj in default_storage.bucket.objects.filter(Prefix=root):
            yield obj.key, obj.last_modified
        return
    base = Path(default_storage.path(""))
    folder = Path(default_storage.path(root))
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                yield path.relative_to(base).as_posix(), written
        except FileNotFoundError:
            continue  # committed (renamed) or removed since the folder was read


def incomplete_sets(root: str, set_prefix: re.Pattern[str]) -> list[IncompleteSet]:
    """The sets of objects under ``root`` that have no complete marker, by prefix.

    ``set_prefix`` matches the start of a key: the match (ending in ``/``) is the set's prefix
    and its first group the set's owner (an export's or a job's id). Keys it does not match
    belong to no set and are left out. One listing of ``root``: a request per 1,000 objects in
    a bucket.
    """
    found: dict[str, tuple[str, list[tuple[str, datetime]]]] = {}
    for key, written in _objects_under(root):
        match = set_prefix.match(key)
        if match is not None:
            found.setdefault(match.group(0), (match.group(1), []))[1].append((key, written))
    return [
        IncompleteSet(
            prefix=prefix,
            owner=owner,
            keys=tuple(sorted(key for key, _ in objects)),
            last_written=max(written for _, written in objects),
        )
        for prefix, (owner, objects) in sorted(found.items())
        if not any(key == f"{prefix}{COMPLETE_MARKER}" for key, _ in objects)
    ]


def incomplete_set_abandoned(staged: IncompleteSet, *, owner_stopped: bool, now: datetime) -> bool:
    """Whether no run will finish ``staged``, for a caller that has left out the sets of runs
    in progress (queued or running: a run that goes on overwrites its own keys, and removing
    a part it finished would leave its marker listing a missing file).

    ``owner_stopped``: the owning run failed or was cancelled, or its row is gone. Its set is
    abandoned once nothing was written there for ``SWEEP_STALE_SECONDS``: a writer told to stop
    may still be finishing the file in hand. Any other owner (unknown, or done without a marker
    there) gets ``STORAGE_STAGED_MAX_AGE_SECONDS``.
    """
    seconds = (
        settings.SWEEP_STALE_SECONDS if owner_stopped else settings.STORAGE_STAGED_MAX_AGE_SECONDS
    )
    return now - staged.last_written >= timedelta(seconds=seconds)


def incomplete_set_remove(staged: IncompleteSet, *, reason: str) -> None:
    """Delete every object of an abandoned set, and log which and why."""
    delete_keys(list(staged.keys))
    logger.warning(
        "removed %d staged object(s) under %s (%s): %s",
        len(staged.keys),
        staged.prefix,
        reason,
        ", ".join(staged.keys),
    )
