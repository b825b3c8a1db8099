"""Django-free near-duplicate detection with 64-bit perceptual hashes."""

from __future__ import annotations

import io

from PIL import Image

HASH_BITS = 64
MAX_DISTANCE = 16
WHITE = (255, 255, 255, 255)


def perceptual_hash(image: Image.Image) -> int:
    """The image's 64-bit DCT perceptual hash (``imagehash.phash``) as a signed 64-bit integer.

    Transparent stickers are laid over white first: the colour stored under a fully
    transparent pixel is arbitrary and would otherwise decide the hash.
    """
    import imagehash

    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    bits = imagehash.phash(flat, hash_size=8).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= 1 << 63 else value


def perceptual_hash_bytes(data: bytes) -> int:
    """The hash of an encoded image (PNG, or the first frame of an animated WebP)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return perceptual_hash(image)


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


class NearDuplicateIndex:
    """Hashes kept so far, answering "is there one within ``max_distance`` bits?" quickly.

    Pigeonhole indexing: split the 64 bits into ``max_distance + 1`` blocks; two hashes within
    ``max_distance`` bits agree exactly on at least one block, so only hashes sharing a block
    value are compared. Checking n hashes costs about n lookups, not n² comparisons.
    """

    def __init__(self, max_distance: int):
        if not 0 <= max_distance <= MAX_DISTANCE:
            raise ValueError(
                f"`max_distance` has to be between 0 and {MAX_DISTANCE} but is {max_distance}."
            )
        self.max_distance = max_distance
        blocks = max_distance + 1
        edges = [round(i * HASH_BITS / blocks) for i in range(blocks + 1)]
        self._blocks = [
            (lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:], strict=False)
        ]
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._blocks]

    def _keys(self, value: int) -> list[int]:
        unsigned = value & ((1 << 64) - 1)
        return [(unsigned >> shift) & mask for shift, mask in self._blocks]

    def find(self, value: int) -> int | None:
        """A kept hash within ``max_distance`` bits of ``value``, or None."""
        for bucket, key in zip(self._buckets, self._keys(value), strict=True):
            for other in bucket.get(key, ()):
                if hamming(value, other) <= self.max_distance:
                    return other
        return None

    def add(self, value: int) -> None:
        for bucket, key in zip(self._buckets, self._keys(value), strict=True):
            bucket.setdefault(key, []).append(value)

    def add_if_new(self, value: int) -> bool:
        """Keep ``value`` unless a kept hash is near it; True when it was kept."""
        if self.find(value) is not None:
            return False
        self.add(value)
        return True
