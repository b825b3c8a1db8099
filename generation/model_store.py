"""Where model folders live, and the local copy a process loads: the one owner of model URIs.

A model version's URI is a local folder, a hub id, or, with a bucket configured
(``STICKERLOOP_S3_BUCKET``), ``s3://<bucket>/models/<name>/``: a folder copied into the bucket
with ``stickerloop.storage.folder_upload`` (every file committed by name, the complete marker
last). A process that loads a bucket model (a gpu worker generating, a train worker training
from it) copies it once into ``MODELS_DIR/.bucket-cache/``, in a folder named after the
marker's checksum, so a model written again under the same name is copied again.

With a bucket, the workers may run on other machines: a model must be in the bucket or in the
models directory (the volume every process mounts), and registration refuses anything else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from generation.pipelines import ModelLoadError
from stickerloop.storage import (
    COMPLETE_MARKER,
    folder_download,
    folder_upload,
    read_complete_marker,
)

BUCKET_SCHEME = "s3://"
MODELS_PREFIX = "models/"
CACHE_DIR = ".bucket-cache"
# What a process that only reads a model's facts (its kind, noise schedule, tokenizer) skips.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


def _bucket() -> str | None:
    return getattr(settings, "S3_BUCKET", None) or None


def bucket_uri(prefix: str) -> str:
    return f"{BUCKET_SCHEME}{_bucket()}/{prefix}"


def _bucket_prefix(uri: str) -> tuple[str, str] | None:
    """(bucket, key prefix ending in ``/``) of an ``s3://`` URI, else None."""
    if not uri.startswith(BUCKET_SCHEME):
        return None
    bucket, _, prefix = uri.removeprefix(BUCKET_SCHEME).partition("/")
    return bucket, prefix.rstrip("/") + "/"


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES)


def model_uri_problem(uri: str, local_folder: Path | None) -> str | None:
    """Why a model at ``uri`` (``local_folder`` when it names one) may not be registered, or
    None. Checks where it is, not what it holds (``model_version_register`` does)."""
    bucket = _bucket()
    parts = _bucket_prefix(uri)
    if parts is not None:
        named, prefix = parts
        if bucket is None:
            return f"{uri} is in a bucket, but no bucket is configured (STICKERLOOP_S3_BUCKET)."
        if named != bucket:
            return f"{uri} is outside the bucket {bucket!r} (STICKERLOOP_S3_BUCKET)."
        if not prefix.startswith(MODELS_PREFIX) or ".." in prefix.split("/"):
            return f"{uri} is outside the bucket's {MODELS_PREFIX} folder."
        if read_complete_marker(prefix) is None:
            return f"No complete model at {uri}: {COMPLETE_MARKER} is missing."
        return None
    if bucket is None or local_folder is None:
        return None
    models_dir = Path(settings.MODELS_DIR).resolve()
    if not local_folder.resolve().is_relative_to(models_dir):
        return (
            f"{local_folder} is outside the models directory {models_dir} "
            "(STICKERLOOP_MODELS_DIR): with a bucket, models live in the bucket or there."
        )
    return None


def model_folder_local(uri: str, *, weights: bool = True) -> str:
    """A local folder (or hub id) that loaders can open for the model at ``uri``: ``uri`` itself
    unless it is in the bucket, else its local copy, made now if this machine has none.
    ``weights=False`` copies only the configuration and tokenizer files (what the web process
    reads to check a request), into a folder of its own.

    Raises:
        ModelLoadError: no complete model at ``uri``, or the copy failed; names the URI.
    """
    parts = _bucket_prefix(uri)
    if parts is None:
        return uri
    _, prefix = parts
    try:
        marker = read_complete_marker(prefix)
        if marker is None:
            raise ModelLoadError(f"No complete model at {uri}: {COMPLETE_MARKER} is missing.")
        digest = hashlib.sha256(json.dumps(marker, sort_keys=True).encode()).hexdigest()[:16]
        name = prefix.strip("/").replace("/", "--")
        target = Path(settings.MODELS_DIR) / CACHE_DIR / f"{name}-{digest}"
        if not weights:
            target = target.with_name(f"{target.name}-configs")
        if not target.is_dir():
            folder_download(prefix, target, skip=None if weights else _is_weight_file)
    except ModelLoadError:
        raise
    except Exception as exc:  # botocore's errors and OSError alike: the worker names the URI
        raise ModelLoadError(f"Cannot copy the model at {uri}: {exc}") from exc
    return str(target)


def model_folder_publish(
    folder: Path, *, name: str, skip: Callable[[str], bool] | None = None
) -> str:
    """Copy a local model folder into the bucket as ``models/<name>/`` (``skip(relative
    name)`` leaves files out) and return its URI; the marker goes last, so a copy that stops
    halfway is never taken for a model. Assumes a bucket is configured."""
    prefix = f"{MODELS_PREFIX}{name}/"
    folder_upload(folder, prefix, skip=skip)
    return bucket_uri(prefix)


def bucket_configured() -> bool:
    return _bucket() is not None
