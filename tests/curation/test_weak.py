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
