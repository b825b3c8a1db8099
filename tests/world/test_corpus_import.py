"""The world's weak corpus goes through the platform's weak import as a real corpus would: the
service queues the Celery task, the task imports every item with its caption and weak labels,
and nothing of the truth beside the corpus reaches the platform."""

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import Candidate
from generation.pipelines.encode import encode_png
from generation.world.corpus import write_corpus
from generation.world.render import StickerSpec, render_sticker
from training_bridge import tasks as curation_tasks
from training_bridge.weak_imports import weak_import_create, weak_source_create

pytestmark = pytest.mark.django_db

EDGES = [0.01, 0.05]
SPEC_FIELDS = (
    "subject",
    "colour",
    "expression",
    "background",
    "outline",
    "finish",
    "placement",
    "seed",
)


@pytest.fixture
def sent(monkeypatch):
    """The ids the import task is sent once the transaction commits (the broker's side)."""
    messages = []
    monkeypatch.setattr(curation_tasks.run_weak_import, "delay", lambda *a: messages.append(a))
    return messages


def import_corpus(
    *, out, file_format, kind, curator, sent, on_commit, edges=None
) -> tuple[object, dict]:
    """Queue the corpus at ``out`` through the service, run the task as the worker would, and
    return the finished import and its candidates by corpus file name."""
    source = weak_source_create(
        name=f"world-{kind}-{file_format}",
        kind=kind,
        motion_bucket_edges=edges,
        created_by=curator,
    )
    upload, folder = None, None
    if file_format == "folder":
        folder = out.name
    else:
        upload = SimpleUploadedFile(out.name, out.read_bytes())
    with on_commit(execute=True):
        weak_import = weak_import_create(
            source=source,
            file_format=file_format,
            upload=upload,
            folder=folder,
            requested_by=curator,
        )
    assert sent == [(weak_import.pk,)]
    curation_tasks.run_weak_import(weak_import.pk)
    weak_import.refresh_from_db()
    candidates = Candidate.objects.filter(import_source=source.name)
    by_file = {c.params["file"].rpartition("(")[2].rstrip(")"): c for c in candidates}
    return weak_import, by_file


def truth_of(out) -> list[dict]:
    return [json.loads(line) for line in out.with_name(out.name + ".truth.jsonl").open()]


def written_labels(out, file_format) -> dict[str, tuple[str, dict]]:
    """(caption, labels) by file name from the corpus as written, whatever its format."""
    import tarfile

    import pyarrow.parquet as pq

    if file_format == "folder":
        rows = [json.loads(line) for line in (out / "metadata.jsonl").open()]
        return {r.pop("file_name"): (r.pop("text"), r) for r in rows}
    if file_format == "tar":
        with tarfile.open(out) as archive:
            sidecars = {
                m.name: json.loads(archive.extractfile(m).read())
                for m in archive.getmembers()
                if m.name.endswith(".json")
            }
        ext = "webp" if "clips" in out.name else "png"
        return {
            f"{name.removesuffix('.json')}.{ext}": (row.pop("text"), row)
            for name, row in sidecars.items()
        }
    rows = pq.read_table(out).to_pylist()
    return {r.pop("image")["path"]: (r.pop("text"), r) for r in rows}


@pytest.mark.parametrize("file_format", ["folder", "tar", "parquet"])
def test_24_world_stickers_import_with_their_captions_and_weak_labels(
    settings, tmp_path, curator, sent, django_capture_on_commit_callbacks, file_format
):
    # given
    settings.WEAK_IMPORT_ROOT = tmp_path / "imports"
    settings.WEAK_IMPORT_ROOT.mkdir()
    name = {"folder": "stickers", "tar": "stickers.tar", "parquet": "stickers.parquet"}
    out = settings.WEAK_IMPORT_ROOT / name[file_format]
    write_corpus(out, count=24, file_format=file_format)
    truth = truth_of(out)
    # when
    done, candidates = import_corpus(
        out=out,
        file_format=file_format,
        kind="image",
        curator=curator,
        sent=sent,
        on_commit=django_capture_on_commit_callbacks,
    )
    # then: every item is a candidate; the truth beside the corpus was not read
    assert (done.status, done.processed, done.imported, done.duplicates, done.failed) == (
        "succeeded",
        24,
        24,
        0,
        0,
    )
    assert done.errors == []
    assert sorted(candidates) == [row["file"] for row in truth]
    written = written_labels(out, file_format)
    for row in truth:
        candidate = candidates[row["file"]]
        caption, labels = written[row["file"]]
        assert (candidate.raw_prompt, candidate.weak_labels) == (caption, labels)
        assert caption == row["caption"]
        assert set(candidate.weak_labels) == {"keyword", "sticker_like", "confidence"}
        assert (candidate.kind, candidate.width, candidate.height) == ("sticker", 64, 64)
    # the truth re-renders each sticker, and the platform, which re-encodes a PNG from its
    # pixels, stored those very pixels
    for row in truth:
        spec = StickerSpec(**{field: row[field] for field in SPEC_FIELDS})
        png = encode_png(render_sticker(spec))
        assert candidates[row["file"]].sha256 == hashlib.sha256(png).hexdigest()


@pytest.mark.parametrize("file_format", ["folder", "tar", "parquet"])
def test_8_world_clips_import_as_animations_with_the_platforms_motion_buckets(
    settings, tmp_path, curator, sent, django_capture_on_commit_callbacks, file_format
):
    # given: clips 12-19, which hold a jerky still clip and three smooth still ones
    settings.WEAK_IMPORT_ROOT = tmp_path / "imports"
    settings.WEAK_IMPORT_ROOT.mkdir()
    name = {"folder": "clips", "tar": "clips.tar", "parquet": "clips.parquet"}
    out = settings.WEAK_IMPORT_ROOT / name[file_format]
    write_corpus(out, count=8, start=12, animated=True, file_format=file_format)
    truth = truth_of(out)
    # when
    done, candidates = import_corpus(
        out=out,
        file_format=file_format,
        kind="animation",
        curator=curator,
        sent=sent,
        on_commit=django_capture_on_commit_callbacks,
        edges=EDGES,
    )
    # then
    assert (done.status, done.imported, done.failed) == ("succeeded", 8, 0)
    assert sorted(candidates) == [f"000000{i}.webp" for i in range(12, 20)]
    written = written_labels(out, file_format)
    for row in truth:
        candidate = candidates[row["file"]]
        caption, labels = written[row["file"]]
        bucket = candidate.weak_labels.pop("motion_bucket")
        assert (candidate.raw_prompt, candidate.weak_labels) == (caption, labels)
        assert caption == row["caption"]
        assert (candidate.kind, candidate.frame_count, candidate.params["fps"]) == (
            "animation",
            8,
            8,
        )
        if (row["motion"], row["smoothness"]) == ("still", "smooth"):
            assert (candidate.motion_score < 0.001, bucket) == (True, 0), row
        elif row["motion"] in ("bounce", "spin", "shake", "wave", "pulse"):
            assert (candidate.motion_score > EDGES[0], bucket >= 1) == (True, True), row
    motions = [(row["motion"], row["smoothness"]) for row in truth]
    assert motions.count(("still", "smooth")) == 3
    assert ("still", "jerky") in motions
