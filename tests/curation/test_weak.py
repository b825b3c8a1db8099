"""Weak corpora: folder, tar and Parquet imports with per-file errors, motion buckets, and weak
rules that select by label and bucket."""

import io
import json
import tarfile

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generation.models import Candidate
from generation.pipelines import decode_animated_webp, encode_animated_webp, encode_png
from tests.factories import sticker_pixels
from training_bridge.models import CandidateFingerprint, DatasetVersion, WeakImport, WeakSource
from training_bridge.weak_imports import weak_import_create, weak_import_run, weak_source_create

pytestmark = pytest.mark.django_db


def png(seed: int) -> bytes:
    return encode_png(sticker_pixels(seed))


def gif(frames: list[np.ndarray]) -> bytes:
    images = [Image.fromarray(f[..., :3]) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=125, loop=0
    )
    return buffer.getvalue()


def moving(seed: int, step: int, count: int = 4) -> list[np.ndarray]:
    base = sticker_pixels(seed)
    return [np.roll(base, shift=i * step, axis=0) for i in range(count)]


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_import(source, file_format, *, upload=None, folder=None, user=None):
    weak_import = weak_import_create(
        source=source, file_format=file_format, upload=upload, folder=folder, requested_by=user
    )
    weak_import_run(import_id=weak_import.pk)
    weak_import.refresh_from_db()
    return weak_import


def test_folder_import_reports_each_bad_row_and_imports_the_rest(settings, tmp_path, curator):
    settings.WEAK_IMPORT_ROOT = tmp_path / "imports"
    folder = settings.WEAK_IMPORT_ROOT / "stickers-a"
    folder.mkdir(parents=True)
    (folder / "one.png").write_bytes(png(1))
    (folder / "two.png").write_bytes(png(2))
    (folder / "again.png").write_bytes(png(1))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    rows = [
        {"file_name": "one.png", "text": "a happy cat", "labels": {"keyword": "cat"}, "score": 5},
        {"file_name": "two.png", "caption": "a sad dog", "keyword": "dog"},
        {"file_name": "again.png", "text": "a happy cat again", "keyword": "cat"},
        {"file_name": "broken.png", "text": "broken", "keyword": "cat"},
        {"file_name": "missing.png", "text": "missing"},
        {"file_name": "two.png"},
        {"file_name": "../../etc/passwd", "text": "escape"},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    source = weak_source_create(name="stickers-a", kind="image", created_by=curator)
    done = run_import(source, "folder", folder="stickers-a", user=curator)
    assert (done.status, done.processed, done.imported, done.duplicates, done.failed) == (
        "succeeded",
        8,
        2,
        1,
        5,
    )
    assert [e["file"] for e in done.errors] == [
        "broken.png",
        "missing.png",
        "two.png",
        "../../etc/passwd",
        "metadata.jsonl line 8",
    ]
    assert done.errors[1]["error"] == "missing.png: no such file in the corpus."
    assert done.errors[2]["error"] == "two.png: no caption (a non-empty 'text' or 'caption')."
    assert done.errors[3]["error"] == (
        "../../etc/passwd: file_name must be a relative path inside the corpus."
    )
    assert done.errors[0]["error"].startswith("broken.png: not a readable image")
    made = list(Candidate.objects.filter(import_source="stickers-a").order_by("raw_prompt"))
    assert [(c.raw_prompt, c.weak_labels, c.kind, c.origin) for c in made] == [
        ("a happy cat", {"keyword": "cat", "score": 5}, "sticker", "imported"),
        ("a sad dog", {"keyword": "dog"}, "sticker", "imported"),
    ]
    cat = made[0]
    assert cat.file == f"imports/{source.pk}/{cat.sha256[:2]}/{cat.sha256}.png"
    with default_storage.open(cat.file) as fh:
        image = Image.open(fh)
        assert (image.mode, image.size) == ("RGBA", (32, 32))
    assert CandidateFingerprint.objects.filter(candidate__in=made).count() == 2
    source.refresh_from_db()
    assert source.candidate_count == 2
    # a second run of the same folder imports nothing twice
    second = run_import(source, "folder", folder="stickers-a")
    assert (second.imported, second.duplicates, second.failed) == (0, 3, 5)
    assert Candidate.objects.filter(import_source="stickers-a").count() == 2


def test_tar_and_parquet_imports_with_motion_buckets_and_a_weak_rule(curator, api):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = weak_source_create(
        name="clips", kind="animation", motion_bucket_edges=[0.01, 0.05], created_by=curator
    )
    still = [sticker_pixels(7)] * 3
    members = {
        "clips/slow.webp": encode_animated_webp(moving(3, 1), fps=8),
        "clips/slow.txt": b"a slowly waving cat",
        "clips/fast.gif": gif(moving(4, 9)),
        "clips/fast.json": json.dumps({"caption": "a jumping dog", "tag": "dog"}).encode(),
        "clips/still.webp": encode_animated_webp(still, fps=8),
        "clips/still.txt": b"a still frog",
        "clips/single.png": png(5),
        "clips/single.txt": b"one frame only",
        "clips/nocaption.webp": encode_animated_webp(moving(6, 2), fps=8),
    }
    upload = SimpleUploadedFile("clips.tar", tar_bytes(members), content_type="application/x-tar")
    done = run_import(source, "tar", upload=upload, user=curator)
    assert (done.status, done.imported, done.failed) == ("succeeded", 3, 2)
    assert {e["file"]: e["error"] for e in done.errors} == {
        "clips/single.png": (
            "clips/single.png: an animation needs at least 2 frames; this file has 1."
        ),
        "clips/nocaption.webp": (
            "clips/nocaption.webp: no caption (a non-empty 'text' or 'caption')."
        ),
    }
    clips = {c.raw_prompt: c for c in Candidate.objects.filter(import_source="clips")}
    assert clips["a still frog"].motion_score < 0.001
    assert clips["a still frog"].weak_labels == {"motion_bucket": 0}
    assert clips["a jumping dog"].weak_labels == {"tag": "dog", "motion_bucket": 2}
    assert clips["a slowly waving cat"].weak_labels["motion_bucket"] in (1, 2)
    fast = clips["a jumping dog"]
    assert (fast.kind, fast.frame_count, fast.params["fps"]) == ("animation", 4, 8)
    with default_storage.open(fast.file) as fh:
        frames = decode_animated_webp(fh.read())
    assert len(frames) == 4 and frames[0].mode == "RGBA"
    assert default_storage.exists(f"{fast.frames_prefix}frame-003.png")

    table = pa.table(
        {
            "image": [
                {"bytes": encode_animated_webp(moving(8, 12), fps=4), "path": "p0.webp"},
                {"bytes": b"garbage", "path": "p1.webp"},
            ],
            "text": ["a spinning star", "garbage"],
            "tag": ["star", "none"],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    upload = SimpleUploadedFile("more.parquet", buffer.getvalue())
    done = run_import(source, "parquet", upload=upload, user=curator)
    assert (done.imported, done.failed) == (1, 1)
    assert done.errors[0]["file"] == "row 1 (p1.webp)"
    star = Candidate.objects.get(import_source="clips", raw_prompt="a spinning star")
    assert (star.weak_labels, star.params["fps"]) == ({"tag": "star", "motion_bucket": 2}, 4)

    # a weak rule takes the tagged, moving clips
    client = api(curator)
    response = client.post(
        "/api/dataset-rules/create/",
        {
            "name": "weak motion",
            "purpose": "weak",
            "kind": "animation",
            "weak_sources": [source.pk],
            "weak_label_filters": {"tag": ["dog", "star"]},
            "motion_buckets": [2],
            "validation_fraction": 0,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    rule = response.json()
    preview = client.get(f"/api/dataset-rules/{rule['id']}/preview/").json()
    assert [(s["key"], s["kept"], s["dropped"]) for s in preview["stages"]] == [
        ("source", 4, 0),
        ("kind", 4, 0),
        ("weak_label_tag", 2, 2),
        ("motion_bucket", 2, 0),
        ("held_out", 2, 0),
    ]
    built = client.post(f"/api/dataset-rules/{rule['id']}/build/").json()["version"]
    entries = client.get(f"/api/dataset-versions/{built['id']}/entries/").json()["results"]
    assert sorted((e["caption"], e["label"], e["model_version_name"]) for e in entries) == [
        ("a jumping dog", "dog", ""),
        ("a spinning star", "star", ""),
    ]


def test_bad_import_requests_store_nothing(api, curator, settings, tmp_path):
    settings.WEAK_IMPORT_ROOT = tmp_path / "imports"
    (tmp_path / "imports").mkdir()
    client = api(curator)
    made = client.post("/api/weak-sources/create/", {"name": "web", "kind": "image"}, format="json")
    assert made.status_code == 201
    url = f"/api/weak-sources/{made.json()['id']}/imports/"
    not_tar = client.post(url, {"format": "tar", "file": SimpleUploadedFile("x.tar", b"hello")})
    assert not_tar.status_code == 400
    assert not_tar.json()["file"][0].startswith("The upload is not a readable tar archive")
    not_parquet = client.post(
        url, {"format": "parquet", "file": SimpleUploadedFile("x.parquet", b"PAR1")}
    )
    assert not_parquet.json() == {"file": ["The upload is not a Parquet file."]}
    outside = client.post(url, {"format": "folder", "folder": "../.."}, format="json")
    assert outside.json() == {
        "folder": [f"The folder must lie under {(tmp_path / 'imports').resolve()}."]
    }
    missing = client.post(url, {"format": "folder", "folder": "nope"}, format="json")
    assert missing.json() == {
        "folder": [f"No folder 'nope' under {(tmp_path / 'imports').resolve()}."]
    }
    edges = client.post(
        "/api/weak-sources/create/",
        {"name": "bad", "kind": "animation", "motion_bucket_edges": [0.2, 0.1]},
        format="json",
    )
    assert edges.json() == {"motion_bucket_edges": ["Edges must be strictly ascending."]}
    assert WeakImport.objects.count() == 0
    assert WeakSource.objects.count() == 1
    assert not default_storage.exists("weak-imports")
    assert DatasetVersion.objects.count() == 0


def _member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_a_tar_reports_every_member_it_skips(curator):
    # given: one sticker with its caption, a folder, and six members that are not read
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(_member("stickers", tarfile.DIRTYPE))
        for name, data in (("stickers/one.png", png(1)), ("stickers/one.txt", b"a cat")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.addfile(_member("stickers/link.png", tarfile.SYMTYPE, "../../etc/passwd"))
        archive.addfile(_member("stickers/hard.png", tarfile.LNKTYPE, "stickers/one.png"))
        archive.addfile(_member("stickers/null", tarfile.CHRTYPE))
        archive.addfile(_member("stickers/pipe", tarfile.FIFOTYPE))
        for name in ("../escape.png", "/etc/abs.png"):
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"png"))
    source = weak_source_create(name="links", kind="image", created_by=curator)
    upload = SimpleUploadedFile("links.tar", buffer.getvalue())
    # when
    done = run_import(source, "tar", upload=upload, user=curator)
    # then
    assert (done.status, done.processed, done.imported, done.failed) == ("succeeded", 7, 1, 6)
    only = "only regular files are read."
    assert done.errors == [
        {
            "file": "stickers/link.png",
            "error": f"stickers/link.png: skipped: a symbolic link (to '../../etc/passwd'); {only}",
        },
        {
            "file": "stickers/hard.png",
            "error": f"stickers/hard.png: skipped: a hard link (to 'stickers/one.png'); {only}",
        },
        {"file": "stickers/null", "error": f"stickers/null: skipped: a device file; {only}"},
        {"file": "stickers/pipe", "error": f"stickers/pipe: skipped: a FIFO; {only}"},
        {
            "file": "../escape.png",
            "error": "../escape.png: skipped: the name leaves the archive (it is absolute or "
            f"holds '..'); {only}",
        },
        {
            "file": "/etc/abs.png",
            "error": "/etc/abs.png: skipped: the name leaves the archive (it is absolute or "
            f"holds '..'); {only}",
        },
    ]
    assert list(Candidate.objects.filter(import_source="links").values_list("raw_prompt")) == [
        ("a cat",)
    ]


def test_a_folder_reports_links_to_folders_and_special_files(settings, tmp_path, curator):
    import os

    settings.WEAK_IMPORT_ROOT = tmp_path / "imports"
    folder = settings.WEAK_IMPORT_ROOT / "special"
    folder.mkdir(parents=True)
    (folder / "one.png").write_bytes(png(1))
    (folder / "one.txt").write_text("a cat")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "two.png").write_bytes(png(2))
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    (folder / "dangling.png").symlink_to(tmp_path / "nothing.png")
    os.mkfifo(folder / "pipe")
    source = weak_source_create(name="special", kind="image", created_by=curator)
    done = run_import(source, "folder", folder="special", user=curator)
    only = "only regular files are read."
    assert (done.status, done.imported, done.failed) == ("succeeded", 1, 3)
    assert done.errors == [
        {"file": "dangling.png", "error": f"dangling.png: skipped: a broken symbolic link; {only}"},
        {
            "file": "linked",
            "error": f"linked: skipped: a symbolic link to a folder, not followed; {only}",
        },
        {"file": "pipe", "error": f"pipe: skipped: not a regular file; {only}"},
    ]


def test_an_upload_over_the_size_limit_is_400_naming_the_file(api, curator, settings):
    from django.core.exceptions import ValidationError

    from training_bridge.weak_imports import weak_upload_size_check

    with pytest.raises(ValidationError) as refused:
        weak_upload_size_check(2 * 2**30 + 1)
    assert refused.value.message_dict == {
        "file": ["A weak-corpus upload may have at most 2 GiB (2,147,483,648 bytes)."]
    }
    weak_upload_size_check(2 * 2**30)

    settings.WEAK_IMPORT_MAX_BYTES = 2**20
    client = api(curator)
    made = client.post("/api/weak-sources/create/", {"name": "big", "kind": "image"}, format="json")
    url = f"/api/weak-sources/{made.json()['id']}/imports/"
    message = {"file": ["A weak-corpus upload may have at most 1 MiB (1,048,576 bytes)."]}
    # the file's own size, just over the limit
    over = SimpleUploadedFile("big.tar", tar_bytes({"a.png": b"x" * 2**20}))
    answer = client.post(url, {"format": "tar", "file": over})
    assert (answer.status_code, answer.json()) == (400, message)
    # a body far over the limit, refused from its declared length before it is read
    huge = SimpleUploadedFile("huge.parquet", b"x" * (2 * 2**20))
    answer = client.post(url, {"format": "parquet", "file": huge})
    assert (answer.status_code, answer.json()) == (400, message)
    # at the limit, the size passes and the container is checked
    at = SimpleUploadedFile("at.tar", b"x" * 2**20)
    answer = client.post(url, {"format": "tar", "file": at})
    assert answer.json()["file"][0].startswith("The upload is not a readable tar archive")
    assert WeakImport.objects.count() == 0
    assert not default_storage.exists("weak-imports")
