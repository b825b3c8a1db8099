"""The simulated raters' eyes: the oracle, shared by every rater thread, turning an item's
downloaded files into what it sees of each shown candidate (``policies.Seen``).

One oracle serves all raters behind a lock (its model runs one call at a time). Its verdicts are
cached by file content: an item is judged by several raters, and the oracle is deterministic, so
a cached verdict is the one a fresh call would give.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable

from PIL import Image, ImageSequence

from generation.world import factors

from .policies import Seen, see


def decode_frames(data: bytes) -> list[Image.Image]:
    """Every frame of a PNG or animated WebP, as RGBA images."""
    with Image.open(io.BytesIO(data)) as image:
        return [frame.convert("RGBA") for frame in ImageSequence.Iterator(image)]


def _clip_frames(frames: list[Image.Image]) -> list[Image.Image]:
    """The animation oracle takes clips of ``factors.FRAMES`` frames: others are resampled to
    that many, evenly spaced."""
    if len(frames) == factors.FRAMES:
        return frames
    return [frames[i * len(frames) // factors.FRAMES] for i in range(factors.FRAMES)]


class Judge:
    """``oracle``: anything with ``judge_images(images)`` and ``judge_animations(clips)`` as
    ``generation.world.oracle.Oracle`` has them."""

    def __init__(self, oracle) -> None:
        self._oracle = oracle
        self._lock = threading.Lock()
        self._images: dict[str, dict] = {}
        self._clips: dict[str, dict] = {}

    def _judged(self, images: dict[str, Image.Image], clips: dict[str, list[Image.Image]]):
        with self._lock:
            new_images = [key for key in images if key not in self._images]
            new_clips = [key for key in clips if key not in self._clips]
            if new_images:
                verdicts = self._oracle.judge_images([images[key] for key in new_images])
                self._images.update(zip(new_images, verdicts, strict=True))
            if new_clips:
                verdicts = self._oracle.judge_animations([clips[key] for key in new_clips])
                self._clips.update(zip(new_clips, verdicts, strict=True))
            return (
                {key: self._images[key] for key in images},
                {key: self._clips[key] for key in clips},
            )

    def see_item(self, item: dict, fetch: Callable[[str], bytes]) -> list[Seen]:
        """What the oracle sees of each shown candidate of ``item`` (a rating API item), in
        display order; ``fetch`` downloads a media URL."""
        images: dict[str, Image.Image] = {}
        clips: dict[str, list[Image.Image]] = {}
        plans = []
        for candidate in item["candidates"]:
            if candidate["frames"]:
                blobs = [fetch(url) for url in candidate["frames"]]
                frames = [decode_frames(blob)[0] for blob in blobs]
                digests = [hashlib.sha256(blob).hexdigest() for blob in blobs]
            else:
                blob = fetch(candidate["url"])
                frames = decode_frames(blob)
                digest = hashlib.sha256(blob).hexdigest()
                digests = [f"{digest}:{i}" for i in range(len(frames))]
            first, later = digests[0], digests[len(digests) // 2]
            images[first], images[later] = frames[0], frames[len(frames) // 2]
            clip = None
            if candidate["kind"] == "animation" and len(frames) > 1:
                clip = hashlib.sha256("".join(digests).encode()).hexdigest()
                clips[clip] = _clip_frames(frames)
            plans.append((candidate, first, later, clip))
        image_verdicts, clip_verdicts = self._judged(images, clips)
        return [
            see(
                candidate=candidate,
                image=image_verdicts[first],
                animation=clip_verdicts[clip] if clip else None,
                later_image=image_verdicts[later] if clip else None,
            )
            for candidate, first, later, clip in plans
        ]
