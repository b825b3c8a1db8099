"""A minimal, reproducible ustar writer and the descriptions (name, size, sha256) of the files
an export writes.

Every archive is byte-for-byte reproducible: members are written in the order given with a fixed
mtime, owner and mode, so the same version exported twice gives the same checksum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

_BLOCK = 512
_PADDING = [b"\0" * n for n in range(_BLOCK)]
# ustar header fields that never change here: mode 0644, uid 0, gid 0 ... and the tail from the
# type flag on ("0" regular file, no link name, "ustar\0" "00", empty owner names and devices).
_MODE_UID_GID = b"0000644\0" + b"0000000\0" + b"0000000\0"
_TAIL = b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * (_BLOCK - 265)
# The checksum is the byte sum of the header with its own field read as eight spaces.
_CONSTANT_SUM = sum(_MODE_UID_GID) + sum(_TAIL) + 8 * ord(" ")
# Octal digit positions, most significant first: an 11-digit size and a 6-digit checksum.
_PIECE = 1 << 20
_SIZE_SHIFTS = np.arange(30, -1, -3, dtype=np.int64)
_CHECKSUM_SHIFTS = np.arange(15, -1, -3, dtype=np.int64)


def _split_name(name: bytes) -> tuple[bytes, bytes]:
    """(prefix, name) for ustar: a name over 100 bytes is split at a slash into the prefix."""
    if len(name) <= 100:
        return b"", name
    for cut in range(min(len(name) - 1, 155), 0, -1):
        if name[cut] == ord("/") and len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
    raise ValueError(f"archive member name is too long for ustar: {name!r}")


class TarWriter:
    """A minimal ustar writer: regular files only, fixed metadata, sha256 while writing.

    Python's ``tarfile`` spends about 45 µs per member building headers; here the headers of a
    whole run of members are built at once as rows of a numpy array (names, octal sizes and
    checksums filled column-wise), and the run goes out in one write and one hash update. The
    output reads with ``tarfile``, GNU tar and ``webdataset``.
    """

    def __init__(self, path: Path, *, mtime: int = 0):
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._hash = hashlib.sha256()
        self._mtime = b"%011o\0" % max(int(mtime), 0)
        template = np.frombuffer(
            b"".join(
                (
                    b"\0" * 100,
                    _MODE_UID_GID,
                    b"\0" * 12,
                    self._mtime,
                    b" " * 8,
                    _TAIL,
                )
            ),
            dtype=np.uint8,
        )
        # Summed with the checksum field as eight spaces; written with its NUL and space.
        self._template_sum = int(template.sum())
        template = template.copy()
        template[154] = 0
        self._template = template
        self.size = 0
        self.members = 0

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def _header(self, name: bytes, size: int) -> bytes:
        """One header, for a name too long for the fast path."""
        prefix, short = _split_name(name)
        size_field = b"%011o\0" % size
        checksum = _CONSTANT_SUM + sum(short) + sum(prefix) + sum(size_field) + sum(self._mtime)
        tail = _TAIL if not prefix else _TAIL[:189] + prefix + b"\0" * (167 - len(prefix))
        return b"".join(
            (
                short,
                _PADDING[100 - len(short)],
                _MODE_UID_GID,
                size_field,
                self._mtime,
                b"%06o\0 " % checksum,
                tail,
            )
        )

    def _header_rows(self, names: Sequence[bytes], size_array: np.ndarray) -> np.ndarray:
        """The 512-byte headers of a run of members, as the rows of an array."""
        count = len(names)
        rows = np.empty((count, _BLOCK), dtype=np.uint8)
        rows[:] = self._template
        # Fixed-width bytes pad with NULs, as ustar wants; longer names are redone below.
        fitted = np.array(names, dtype="S100").view(np.uint8).reshape(count, 100)
        rows[:, :100] = fitted
        digits = 48 + ((size_array[:, None] >> _SIZE_SHIFTS) & 7)
        rows[:, 124:135] = digits
        # The sum of the constant fields is known; only names and sizes vary.
        checksums = self._template_sum + fitted.sum(axis=1, dtype=np.int64) + digits.sum(axis=1)
        rows[:, 148:154] = 48 + ((checksums[:, None] >> _CHECKSUM_SHIFTS) & 7)
        if max(map(len, names)) > 100:
            for i, name in enumerate(names):
                if len(name) > 100:
                    rows[i] = np.frombuffer(self._header(name, int(size_array[i])), np.uint8)
        return rows

    def add_members(self, names: Sequence[str], datas: Sequence[bytes]) -> None:
        """Members in order, laid out in one buffer: the headers go in with one array
        assignment, each file with one slice assignment; the buffer is then written and
        hashed a megabyte at a time."""
        if not names:
            return
        count = len(names)
        sizes = [len(data) for data in datas]
        size_array = np.fromiter(sizes, dtype=np.int64, count=count)
        blocks = 1 + (size_array + (_BLOCK - 1)) // _BLOCK
        header_at = np.cumsum(blocks) - blocks
        out = np.zeros((int(blocks.sum()), _BLOCK), dtype=np.uint8)
        out[header_at] = self._header_rows([name.encode() for name in names], size_array)
        flat = memoryview(out).cast("B")
        for offset, data, size in zip(
            ((header_at + 1) * _BLOCK).tolist(), datas, sizes, strict=True
        ):
            flat[offset : offset + size] = data
        for piece in range(0, len(flat), _PIECE):
            self._write(flat[piece : piece + _PIECE])
        self.members += count

    def add_chunks(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """A member whose ``size`` bytes arrive in pieces (a large file, streamed)."""
        self._write(self._header_rows([name.encode()], np.array([size], np.int64)).tobytes())
        written = 0
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
        if written != size:
            raise ValueError(f"member {name!r} announced {size} bytes but gave {written}.")
        self._write(_PADDING[-size % _BLOCK])
        self.members += 1

    def close(self) -> OutputFile:
        self._write(b"\0" * (2 * _BLOCK))
        self._file.close()
        return OutputFile(
            name=self.path.name, path=self.path, size=self.size, sha256=self._hash.hexdigest()
        )

    def abort(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class OutputFile:
    name: str
    path: Path
    size: int
    sha256: str


def describe_file(path: Path) -> OutputFile:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return OutputFile(name=path.name, path=path, size=size, sha256=digest.hexdigest())


def combined_sha256(files: Iterable[OutputFile]) -> str:
    """The checksum of a multi-file export: sha256 over ``sha256sum``-style lines, by name.

    A single-file export's checksum is that file's own sha256.
    """
    files = sorted(files, key=lambda f: f.name)
    if len(files) == 1:
        return files[0].sha256
    lines = "".join(f"{f.sha256}  {f.name}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()
