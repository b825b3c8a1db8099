"""Staged writes, commits by name and complete markers (stickerloop.storage) against a real
S3-compatible server (moto's, over HTTP) and a local folder: a write stopped halfway leaves no
object that looks complete."""

import hashlib
import io
import os
import re
from datetime import UTC, datetime

import pytest
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from stickerloop.storage import (
    COMPLETE_MARKER,
    IncompleteSet,
    folder_download,
    folder_upload,
    incomplete_sets,
    read_complete_marker,
    save_committed,
    staging_key,
    write_complete_marker,
)


class BrokenStream(io.RawIOBase):
    """A file whose reading fails after ``size`` bytes: the disk or the network under an upload
    going away halfway."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            raise OSError("the source went away")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_a_committed_object_lands_at_its_key_and_leaves_no_staging_object(s3_bucket, moto_server):
    save_committed("exports/v1/2-parquet/train.parquet", ContentFile(b"rows"))

    assert moto_server.keys(s3_bucket) == ["exports/v1/2-parquet/train.parquet"]
    with default_storage.open("exports/v1/2-parquet/train.parquet", "rb") as fh:
        assert fh.read() == b"rows"


def test_a_large_upload_that_fails_halfway_leaves_no_object_and_no_open_multipart(
    s3_bucket, moto_server
):
    # 20 MiB: boto3 sends it as a multipart upload (parts of 8 MiB); reading fails at 12 MiB.
    stream = io.BufferedReader(BrokenStream(12 << 20))
    with pytest.raises(OSError, match="the source went away"):
        save_committed("models/m/unet/weights.safetensors", File(stream, name="weights"))

    assert moto_server.keys(s3_bucket) == []
    uploads = moto_server.client().list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


def _model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "X"}')
    (folder / "unet" / "weights.safetensors").write_bytes(b"w" * 1000)
    return folder


def test_a_folder_round_trips_with_its_marker_written_last(s3_bucket, moto_server, tmp_path):
    folder = _model_folder(tmp_path)

    files = folder_upload(folder, "models/m/")

    assert files == [
        {
            "name": "model_index.json",
            "size": 20,
            "sha256": hashlib.sha256(b'{"_class_name": "X"}').hexdigest(),
        },
        {
            "name": "unet/weights.safetensors",
            "size": 1000,
            "sha256": hashlib.sha256(b"w" * 1000).hexdigest(),
        },
    ]
    assert moto_server.keys(s3_bucket) == [
        f"models/m/{COMPLETE_MARKER}",
        "models/m/model_index.json",
        "models/m/unet/weights.safetensors",
    ]
    assert read_complete_marker("models/m/") == {"files": files}
    # then: read back, the weights left out on request
    folder_download("models/m/", tmp_path / "copy", skip=lambda n: n.endswith(".safetensors"))
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*") if p.is_file()) == [
        "model_index.json"
    ]
    folder_download("models/m/", tmp_path / "full")
    assert (tmp_path / "full" / "unet" / "weights.safetensors").read_bytes() == b"w" * 1000


def test_a_folder_copy_stopped_halfway_has_no_marker_and_is_not_read(
    s3_bucket, moto_server, tmp_path
):
    # given: a complete copy, then a second copy over it that stops at a file that cannot be
    # read (the kernel refuses reading /proc/self/mem from offset 0 with EINVAL)
    folder = _model_folder(tmp_path)
    folder_upload(folder, "models/m/")
    (folder / "unet" / "weights.safetensors").unlink()
    (folder / "unet" / "weights.safetensors").symlink_to("/proc/self/mem")
    with pytest.raises(OSError, match="Invalid argument"):
        folder_upload(folder, "models/m/")

    # then: the old marker went first, so nothing there is taken for a whole model
    assert read_complete_marker("models/m/") is None
    assert f"models/m/{COMPLETE_MARKER}" not in moto_server.keys(s3_bucket)
    with pytest.raises(FileNotFoundError, match=f"models/m/ has no {COMPLETE_MARKER}"):
        folder_download("models/m/", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_changed_object_fails_the_download_and_leaves_no_folder(s3_bucket, tmp_path):
    folder_upload(_model_folder(tmp_path), "models/m/")
    default_storage.save("models/m/unet/weights.safetensors", ContentFile(b"tampered"))

    with pytest.raises(OSError, match="models/m/unet/weights.safetensors does not match"):
        folder_download("models/m/", tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_committed_file_in_a_folder_is_renamed_into_place(_media_root):
    save_committed("exports/v1/2-parquet/train.parquet", ContentFile(b"rows"))

    assert (_media_root / "exports/v1/2-parquet/train.parquet").read_bytes() == b"rows"
    # nothing staged is left beside it
    assert sorted(p.name for p in (_media_root / "exports/v1/2-parquet").iterdir()) == [
        "train.parquet"
    ]


def test_a_folder_lists_its_sets_without_a_marker_with_their_last_write(_media_root):
    # given: one set stopped with a part committed and one staged, and one set complete
    save_committed("exports/v1/2-parquet/train.parquet", ContentFile(b"rows"))
    default_storage.save(staging_key("exports/v1/2-parquet/validation.parquet"), ContentFile(b"h"))
    save_committed("exports/v1/3-parquet/train.parquet", ContentFile(b"rows"))
    write_complete_marker("exports/v1/3-parquet/", [])
    default_storage.save("exports/README.md", ContentFile(b"no set's"))
    folder = _media_root / "exports/v1/2-parquet"
    os.utime(folder / "train.parquet", (1_800_000_000, 1_800_000_000))
    os.utime(folder / ".validation.parquet.staging", (1_800_000_060, 1_800_000_060))

    found = incomplete_sets("exports/", re.compile(r"exports/v\d+/(\d+)-[a-z]+/"))

    assert found == [
        IncompleteSet(
            prefix="exports/v1/2-parquet/",
            owner="2",
            keys=(
                "exports/v1/2-parquet/.validation.parquet.staging",
                "exports/v1/2-parquet/train.parquet",
            ),
            last_written=datetime(2027, 1, 15, 8, 1, tzinfo=UTC),
        )
    ]
