"""Frame strips: an animation's frames side by side in one stored PNG, beside its frames.

The rating screen shows an animation from its strip, one request per animation instead of one
per frame (issue 16). Generation stores the strip with the frames (``chunks``); animations
stored before strips existed, or imported with frames only, get theirs on first request
(``frame_strip_ensure``). The key follows from ``Candidate.frames_prefix`` alone, so it is as
opaque as the frames' keys and candidates sharing frames share the strip.
"""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from PIL import Image

from generation.models import frame_key
from generation.pipelines import encode_frame_strip
from stickerloop.storage import save_committed

STRIP_NAME = "strip.png"


def frame_strip_key(frames_prefix: str) -> str:
    return f"{frames_prefix}{STRIP_NAME}"


def frame_strip_store(*, frames_prefix: str, frames: list) -> str:
    """Store ``frames`` (PIL images or arrays, one size) as the strip under ``frames_prefix``;
    return its key. For the writer that has the frames in hand and no reader yet (a chunk
    storing new candidates, before their rows exist): it overwrites, with the same bytes on a
    re-run."""
    key = frame_strip_key(frames_prefix)
    default_storage.save(key, ContentFile(encode_frame_strip(frames)))
    return key


def _lock_strip(key: str) -> None:
    """Serialise the writers of one strip until the transaction ends (SQLite has one process,
    so nothing to serialise there)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"frame_strip:{key}"])


def frame_strip_ensure(*, frames_prefix: str, frame_count: int) -> str | None:
    """The key of the strip of the ``frame_count`` frames stored under ``frames_prefix``,
    made from the stored frames and stored first if it is missing; None when a frame is
    missing. Assumes the caller checked that the user may see the animation.

    A strip that exists costs one lookup in storage: it is committed by name
    (``save_committed``), so what exists is whole. A missing one is stored once: concurrent
    requests for it queue on an advisory lock, the first stores it and the others find it.
    """
    key = frame_strip_key(frames_prefix)
    if default_storage.exists(key):
        return key
    with transaction.atomic():
        _lock_strip(key)
        if default_storage.exists(key):
            return key
        frames = []
        for index in range(frame_count):
            try:
                with default_storage.open(frame_key(frames_prefix, index), "rb") as fh:
                    frames.append(Image.open(fh).convert("RGBA"))
            except FileNotFoundError:
                return None
        save_committed(key, ContentFile(encode_frame_strip(frames)))
    return key
