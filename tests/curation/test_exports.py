"""Exports read back with their real consumers (datasets, webdataset, pyarrow) against the
manifest; size and checksum recorded; permission-checked, audited downloads; bad requests."""

import hashlib
import io
import json
import math
import re
import shutil
import subprocess

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from tests.curation.export_helpers import export_now, manifest, stored
from training_bridge.exports import reading
from training_bridge.exports.create import (
    dataset_export_create,
    dataset_exports_create,
    export_file_download_name,
)
from training_bridge.exports.formats import VersionFacts
from training_bridge.exports.local_copy import dataset_version_local_copy
from training_bridge.exports.reading import StorageReader
from training_bridge.exports.run import dataset_export_run, dataset_exports_run
from training_bridge.models import (
    AuditEvent,
    DatasetEntry,
    DatasetExport,
    DatasetRule,
    DatasetVersion,
)
from training_bridge.versions import dataset_version_build, dataset_version_retire

pytestmark = pytest.mark.django_db

STICKER_COLUMNS = [
    "image",
    "text",
    "split",
    "candidate_id",
    "label",
    "confidence",
    "labels",
    "confidences",
    "scores",
    "n_judgments",
    "model_version",
    "seed",
    "prompt",
    "sha256",
]
ANIMATION_COLUMNS = [
    *STICKER_COLUMNS[:8],
    *STICKER_COLUMNS[9:],
    "teacher",
    "source_candidate_id",
    "frame_count",
    "motion_score",
    "source",
    "frames",
]


def check_recorded_files(export):
    total = 0
    for item in export.files:
        data = stored(item["key"])
        assert (len(data), hashlib.sha256(data).hexdigest()) == (item["size"], item["sha256"])
        total += len(data)
    assert export.size_bytes == total


def test_imagefolder_loads_with_datasets_and_matches_the_manifest(
    sticker_version, curator, tmp_path, django_capture_on_commit_callbacks
):
    import datasets

    with django_capture_on_commit_callbacks() as callbacks:
        export = dataset_export_create(
            version=sticker_version, export_format="imagefolder", requested_by=curator
        )
    assert len(callbacks) == 1  # the task is queued after commit
    assert (export.status, export.total, export.done) == ("queued", 12, 0)
    dataset_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert (export.status, export.done, export.error) == ("succeeded", 12, "")
    assert [f["name"] for f in export.files] == ["imagefolder.tar"]
    assert export.sha256 == export.files[0]["sha256"]
    check_recorded_files(export)

    root = dataset_version_local_copy(version=sticker_version)
    assert sorted(p.name for p in root.iterdir()) == [
        "README.md",
        "dataset.json",
        "train",
        "validation",
    ]
    info = json.loads((root / "dataset.json").read_text())
    assert info["dataset_version_id"] == sticker_version.pk
    assert (info["purpose"], info["kind"], info["entry_count"]) == ("alignment", "image", 12)
    assert info["manifest_sha256"] == sticker_version.manifest_sha256
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(tmp_path))
    rows = manifest(sticker_version)
    assert sticker_version.train_count and sticker_version.validation_count
    assert {split: loaded[split].num_rows for split in loaded} == {
        "train": sticker_version.train_count,
        "validation": sticker_version.validation_count,
    }
    for split in ("train", "validation"):
        assert loaded[split].column_names == STICKER_COLUMNS
        for row in loaded[split]:
            entry = rows[row["candidate_id"]]
            assert entry.split == row["split"] == split
            assert row["text"] == entry.caption == f"{entry.prompt_text}, sticker art"
            assert (row["label"], row["confidence"]) == (entry.label, entry.confidence)
            assert row["label"] in (True, False)
            assert (row["labels"], row["confidences"], row["scores"]) == (
                entry.labels,
                entry.confidences,
                entry.scores,
            )
            assert (row["model_version"], row["seed"], row["prompt"]) == (
                "sticker-base",
                entry.seed,
                entry.prompt_text,
            )
            assert row["sha256"] == entry.file_sha256
            assert row["image"].mode == "RGBA"
            original = Image.open(io.BytesIO(stored(entry.file_key)))
            assert row["image"].tobytes() == original.tobytes()
    # a prompt never lands in both splits
    prompts = {s: {r["prompt"] for r in loaded[s]} for s in loaded}
    assert not prompts["train"] & prompts["validation"]
    # the same version exports to the same bytes
    again = export_now(sticker_version, "imagefolder", curator)
    assert again.sha256 == export.sha256


def test_webdataset_shards_read_with_webdataset(sticker_version, curator):
    import webdataset as wds

    export = export_now(sticker_version, "webdataset", curator, shard_size=4)
    train, val = sticker_version.train_count, sticker_version.validation_count
    assert [f["name"] for f in export.files] == [
        "README.md",
        *(f"train-{i:06d}.tar" for i in range(math.ceil(train / 4))),
        *(f"validation-{i:06d}.tar" for i in range(math.ceil(val / 4))),
    ]
    check_recorded_files(export)
    rows = manifest(sticker_version)
    urls = [default_storage.path(f["key"]) for f in export.files if f["name"].endswith(".tar")]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        seen[int(sample["__key__"])] = meta
        entry = rows[int(sample["__key__"])]
        assert hashlib.sha256(sample["png"]).hexdigest() == entry.file_sha256
        assert Image.open(io.BytesIO(sample["png"])).mode == "RGBA"
        assert list(meta) == STICKER_COLUMNS[1:]
        assert (meta["split"], meta["text"], meta["label"], meta["labels"]) == (
            entry.split,
            entry.caption,
            entry.label,
            entry.labels,
        )
        assert (meta["confidences"], meta["scores"]) == (entry.confidences, entry.scores)
    assert sorted(seen) == sorted(rows)


def test_parquet_files_per_split_read_with_pyarrow(sticker_version, curator):
    import pyarrow as pa
    import pyarrow.parquet as pq

    export = export_now(sticker_version, "parquet", curator)
    assert [f["name"] for f in export.files] == [
        "README.md",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    check_recorded_files(export)
    rows = manifest(sticker_version)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for split, item in (("train", export.files[1]), ("validation", export.files[2])):
        table = pq.read_table(default_storage.path(item["key"]))
        assert table.num_rows == sum(1 for e in rows.values() if e.split == split)
        assert table.schema.names == STICKER_COLUMNS
        assert [table.schema.field(n).type for n in ("image", "label", "labels", "scores")] == [
            image,
            pa.bool_(),
            pa.struct([("aligned", pa.bool_()), ("quality", pa.int64())]),
            pa.struct([("quality", pa.float64())]),
        ]
        info = json.loads(table.schema.metadata[b"stickerloop"])
        assert info["manifest_sha256"] == sticker_version.manifest_sha256
        features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
        assert list(features) == STICKER_COLUMNS
        assert (features["image"], features["label"]) == (
            {"_type": "Image"},
            {"dtype": "bool", "_type": "Value"},
        )
        for row in table.to_pylist():
            entry = rows[row["candidate_id"]]
            assert (row["split"], row["text"], row["label"], row["confidence"]) == (
                split,
                entry.caption,
                entry.label,
                entry.confidence,
            )
            assert (row["labels"], row["confidences"], row["scores"]) == (
                entry.labels,
                entry.confidences,
                entry.scores,
            )
            assert row["image"]["path"] == f"{split}/{entry.candidate_id}.png"
            assert hashlib.sha256(row["image"]["bytes"]).hexdigest() == entry.file_sha256


def test_animations_export_frames_source_and_animated_file(animation_version, curator, tmp_path):
    import datasets
    import pyarrow.parquet as pq
    import webdataset as wds

    rows = manifest(animation_version)
    # teacher a passes everywhere, teacher b only on the dog: 4 animations from both teachers
    assert sorted(e.teacher for e in rows.values()) == [
        "anim-teacher-a",
        "anim-teacher-a",
        "anim-teacher-a",
        "anim-teacher-b",
    ]
    assert {e.caption for e in rows.values()} == {"waves"}
    root = dataset_version_local_copy(version=animation_version)
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(tmp_path))
    assert list(loaded) == ["train"]
    assert loaded["train"].column_names == [*ANIMATION_COLUMNS, "frames_dir"]
    for row in loaded["train"]:
        entry = rows[row["candidate_id"]]
        assert (row["teacher"], row["motion_score"]) == (entry.teacher, entry.motion_score)
        assert (row["source_candidate_id"], row["frame_count"]) == (entry.source_candidate_id, 4)
        assert row["image"].format == "WEBP" and getattr(row["image"], "n_frames", 1) == 4
        assert row["source"].mode == "RGBA"
        source = entry.source_candidate
        assert row["source"].tobytes() == Image.open(io.BytesIO(stored(source.file))).tobytes()
        assert [frame.mode for frame in row["frames"]] == ["RGBA"] * 4
        frames = sorted((root / "train" / row["frames_dir"]).glob("frame-*.png"))
        assert [f.name for f in frames] == [f"frame-{i:03d}.png" for i in range(4)]
        for i, frame in enumerate(frames):
            assert frame.read_bytes() == stored(f"{entry.frames_prefix}frame-{i:03d}.png")
            original = Image.open(io.BytesIO(frame.read_bytes()))
            assert row["frames"][i].tobytes() == original.tobytes()

    export = export_now(animation_version, "webdataset", curator, shard_size=100)
    for sample in wds.WebDataset(
        [default_storage.path(f["key"]) for f in export.files if f["name"].endswith(".tar")],
        shardshuffle=False,
        empty_check=False,
    ):
        entry = rows[int(sample["__key__"])]
        assert hashlib.sha256(sample["webp"]).hexdigest() == entry.file_sha256
        assert sorted(k for k in sample if k.startswith("frame-")) == [
            f"frame-{i:03d}.png" for i in range(4)
        ]
        assert sample["source.png"] == stored(entry.source_file_key)
        assert list(json.loads(sample["json"])) == ANIMATION_COLUMNS[1:-2]

    export = export_now(animation_version, "parquet", curator)
    assert [f["name"] for f in export.files] == ["README.md", "train-00000-of-00001.parquet"]
    table = pq.read_table(default_storage.path(export.files[1]["key"]))
    assert table.schema.names == ANIMATION_COLUMNS
    for row in table.to_pylist():
        entry = rows[row["candidate_id"]]
        assert len(row["frames"]) == row["frame_count"] == 4
        assert [f["bytes"] for f in row["frames"]] == [
            stored(f"{entry.frames_prefix}frame-{i:03d}.png") for i in range(4)
        ]
        assert row["source"]["bytes"] == stored(entry.source_file_key)
        assert row["teacher"] == entry.teacher and row["motion_score"] == entry.motion_score


def test_an_export_file_is_saved_as_its_dataset_version_and_format_in_safe_characters():
    version = DatasetVersion(rule=DatasetRule(name='Ünïcode "Style" / set!'), number=3)
    parquet = DatasetExport(version=version, format="parquet")
    imagefolder = DatasetExport(version=version, format="imagefolder")
    unnamed = DatasetExport(
        version=DatasetVersion(rule=DatasetRule(name="!!!"), number=1), format="webdataset"
    )

    assert export_file_download_name(parquet, "data/train-00000-of-00002.parquet") == (
        "unicode-style-set-v3-parquet-data-train-00000-of-00002.parquet"
    )
    assert export_file_download_name(imagefolder, "imagefolder-00001-of-00002.tar") == (
        "unicode-style-set-v3-imagefolder-00001-of-00002.tar"
    )
    assert export_file_download_name(parquet, '../.."x y"/README.md') == (
        "unicode-style-set-v3-parquet-x-y-README.md"
    )
    assert export_file_download_name(unnamed, "train-000000.tar") == (
        "dataset-v1-webdataset-train-000000.tar"
    )


def test_downloads_are_permission_checked_and_audited(
    api, sticker_version, curator, engineer, rater
):
    export = export_now(sticker_version, "imagefolder", curator)
    url = f"/api/dataset-exports/{export.pk}/download/"
    assert api(rater).get(url).status_code == 403
    assert api(None).get(url).status_code in (401, 403)
    response = api(engineer).get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert response["Content-Disposition"] == 'attachment; filename="align-v1-imagefolder.tar"'
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor__username"))
    assert events[-3:] == [
        ("export", "curator"),
        ("export_succeeded", None),
        ("download", "engineer"),
    ]
    missing = api(engineer).get(url + "?file=nope.tar")
    assert missing.status_code == 400
    assert missing.json() == {"file": [f"Export {export.pk} has no file 'nope.tar'."]}


def test_export_requests_that_are_not_allowed(api, curator, make, sticker_version, settings):
    client = api(curator)
    url = f"/api/dataset-versions/{sticker_version.pk}/exports/"
    bad = client.post(url, {"format": "zip"}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"format": ['"zip" is not a valid choice.']}
    shard = client.post(url, {"format": "webdataset", "shard_size": 0}, format="json")
    assert shard.json() == {"shard_size": ["Must be between 1 and 100000, not 0."]}
    shard = client.post(url, {"format": "parquet", "shard_size": 10}, format="json")
    assert shard.json() == {"shard_size": ["Only WebDataset exports have shards."]}
    # a draft cannot be exported (unless the setting allows it)
    rule = sticker_version.rule
    dataset_version_retire(version=sticker_version, retired_by=curator)
    retired = client.post(url, {"format": "parquet"}, format="json")
    assert retired.status_code == 409
    assert retired.json() == {
        "detail": f"Version {sticker_version.pk} is retired; it cannot be exported."
    }
    draft, _ = dataset_version_build(rule=rule, built_by=curator)
    response = client.post(
        f"/api/dataset-versions/{draft.pk}/exports/", {"format": "parquet"}, format="json"
    )
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Version {draft.pk} is a draft; publish it before exporting."
    }
    assert DatasetExport.objects.count() == 0
    assert not AuditEvent.objects.filter(action="export").exists()
    settings.DATASET_EXPORT_DRAFTS = True
    allowed = client.post(
        f"/api/dataset-versions/{draft.pk}/exports/", {"format": "parquet"}, format="json"
    )
    assert allowed.status_code == 201
    assert allowed.json()["status"] == "queued"


def test_a_file_changed_after_the_build_fails_the_export(sticker_version, curator):
    entry = DatasetEntry.objects.filter(version=sticker_version).order_by("position").first()
    default_storage.delete(entry.file_key)
    default_storage.save(entry.file_key, ContentFile(b"tampered"))
    export = dataset_export_create(
        version=sticker_version, export_format="parquet", requested_by=curator
    )
    dataset_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "failed"
    assert export.error == (
        f"Candidate {entry.candidate_id}'s file {entry.file_key} no longer matches the checksum "
        "in the manifest."
    )
    assert (export.files, export.sha256, export.size_bytes) == ([], "", 0)
    assert not default_storage.exists(f"{export.storage_prefix}manifest.parquet")


def test_local_copies_of_every_format(sticker_version, curator):
    import pyarrow.parquet as pq

    folder = dataset_version_local_copy(version=sticker_version, export_format="parquet")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "dataset.json",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert [
        pq.read_metadata(folder / f"{split}-00000-of-00001.parquet").num_rows
        for split in ("train", "validation")
    ] == [sticker_version.train_count, sticker_version.validation_count]
    folder = dataset_version_local_copy(version=sticker_version, export_format="webdataset")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "dataset.json",
        "train-000000.tar",
        "validation-000000.tar",
    ]
    # a second call reuses the copy and the export
    again = dataset_version_local_copy(version=sticker_version, export_format="webdataset")
    assert again == folder
    assert DatasetExport.objects.filter(format="webdataset").count() == 1


@pytest.mark.parametrize("fixture", ["sticker_version", "animation_version"])
def test_batch_boundaries_do_not_change_an_export(fixture, curator, monkeypatch, request):
    """An export written one entry per batch (every file past the byte budget, two entries per
    query) is the same archive, byte for byte, as one written in a single batch; each Parquet
    file holds the same rows, one row group per batch."""
    import pyarrow.parquet as pq

    version = request.getfixturevalue(fixture)
    whole = {
        fmt: export_now(version, fmt, curator, shard_size=3 if fmt == "webdataset" else None)
        for fmt in ("imagefolder", "webdataset", "parquet")
    }
    monkeypatch.setattr(reading, "EXPORT_READ_CHUNK", 2)
    monkeypatch.setattr(reading, "EXPORT_BATCH_BYTES", 1)
    pieces = {
        fmt: export_now(version, fmt, curator, shard_size=3 if fmt == "webdataset" else None)
        for fmt in ("imagefolder", "webdataset", "parquet")
    }
    for fmt in ("imagefolder", "webdataset"):
        assert [(f["name"], f["sha256"]) for f in pieces[fmt].files] == [
            (f["name"], f["sha256"]) for f in whole[fmt].files
        ]
        assert pieces[fmt].sha256 == whole[fmt].sha256
    assert [f["name"] for f in pieces["parquet"].files] == [
        f["name"] for f in whole["parquet"].files
    ]
    for one_file, many_file in zip(whole["parquet"].files, pieces["parquet"].files, strict=True):
        if not one_file["name"].endswith(".parquet"):
            assert many_file["sha256"] == one_file["sha256"]  # the card
            continue
        one, many = (pq.ParquetFile(default_storage.path(f["key"])) for f in (one_file, many_file))
        assert (one.num_row_groups, many.num_row_groups) == (1, one.metadata.num_rows)
        assert many.read().to_pylist() == one.read().to_pylist()


def test_several_formats_in_one_request_are_written_in_one_pass(
    api, sticker_version, curator, monkeypatch, django_capture_on_commit_callbacks
):
    alone = {
        fmt: export_now(
            sticker_version, fmt, curator, shard_size=4 if fmt == "webdataset" else None
        )
        for fmt in ("imagefolder", "webdataset", "parquet")
    }
    url = f"/api/dataset-versions/{sticker_version.pk}/exports/batch/"
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(curator).post(
            url,
            {"formats": ["parquet", "imagefolder", "webdataset"], "shard_size": 4},
            format="json",
        )
    assert response.status_code == 201
    body = response.json()
    assert [(e["format"], e["shard_size"], e["status"]) for e in body] == [
        ("parquet", None, "queued"),
        ("imagefolder", None, "queued"),
        ("webdataset", 4, "queued"),
    ]
    assert len(callbacks) == 1  # one task for the three

    reads = []
    real_read = StorageReader.read

    def counted(self, key):
        reads.append(key)
        return real_read(self, key)

    monkeypatch.setattr(StorageReader, "read", counted)
    dataset_exports_run(export_ids=[e["id"] for e in body])
    together = {e.format: e for e in DatasetExport.objects.filter(pk__in=[e["id"] for e in body])}
    # every file read once for the three formats
    assert sorted(reads) == sorted(e.file_key for e in manifest(sticker_version).values())
    for fmt, export in together.items():
        assert (export.status, export.done, export.error) == ("succeeded", 12, "")
        assert export.sha256 == alone[fmt].sha256  # the same bytes as an export on its own
        check_recorded_files(export)
    events = AuditEvent.objects.filter(export__in=together.values(), action="export_succeeded")
    assert events.count() == 3


def test_a_changed_file_fails_every_export_of_the_pass(sticker_version, curator):
    entry = DatasetEntry.objects.filter(version=sticker_version).order_by("position").last()
    default_storage.delete(entry.file_key)
    default_storage.save(entry.file_key, ContentFile(b"tampered"))
    exports = dataset_exports_create(
        version=sticker_version,
        export_formats=["imagefolder", "webdataset", "parquet"],
        requested_by=curator,
    )
    dataset_exports_run(export_ids=[e.pk for e in exports])
    error = (
        f"Candidate {entry.candidate_id}'s file {entry.file_key} no longer matches the checksum "
        "in the manifest."
    )
    for export in exports:
        export.refresh_from_db()
        assert (export.status, export.error, export.files, export.sha256) == (
            "failed",
            error,
            [],
            "",
        )
        assert not default_storage.exists(export.storage_prefix.rstrip("/"))
    assert AuditEvent.objects.filter(action="export_failed").count() == 3


def test_batch_export_requests_that_are_not_allowed(api, curator, sticker_version):
    client = api(curator)
    url = f"/api/dataset-versions/{sticker_version.pk}/exports/batch/"
    cases = [
        ({"formats": []}, {"formats": ["This list may not be empty."]}),
        ({"formats": "parquet"}, {"formats": ['Expected a list of items but got type "str".']}),
        ({"formats": ["parquet", "zip"]}, {"formats": {"1": ['"zip" is not a valid choice.']}}),
        (
            {"formats": ["parquet", "imagefolder", "parquet"]},
            {"formats": ["Each format once; repeated: 'parquet'."]},
        ),
        (
            {"formats": ["parquet", "imagefolder"], "shard_size": 10},
            {"shard_size": ["Only WebDataset exports have shards."]},
        ),
        # the parquet row is made before the shard size is refused: it is rolled back too
        (
            {"formats": ["parquet", "webdataset"], "shard_size": 0},
            {"shard_size": ["Must be between 1 and 100000, not 0."]},
        ),
    ]
    for payload, expected in cases:
        response = client.post(url, payload, format="json")
        assert (response.status_code, response.json()) == (400, expected), payload
    assert DatasetExport.objects.count() == 0
    assert not AuditEvent.objects.filter(action="export").exists()
    assert api(None).post(url, {"formats": ["parquet"]}, format="json").status_code in (401, 403)


def test_a_large_version_is_written_in_parts_that_read_back_as_one(
    sticker_version, curator, settings, tmp_path, django_capture_on_commit_callbacks
):
    """Parts (here at most 5 entries each: 12 entries make 3 parts of 4) run as tasks of their
    own, in any order; the export succeeds with the last, and every consumer reads the parts
    back as the whole version."""
    import datasets
    import pyarrow.parquet as pq
    import webdataset as wds

    from training_bridge.recipes.data import read_export

    settings.DATASET_EXPORT_PART_ENTRIES = 5
    with django_capture_on_commit_callbacks() as callbacks:
        exports = dataset_exports_create(
            version=sticker_version,
            export_formats=["imagefolder", "webdataset", "parquet"],
            shard_size=3,
            requested_by=curator,
        )
    assert len(callbacks) == 3  # a task per part, each for the three formats
    assert [e.parts for e in exports] == [3, 3, 3]
    ids = [e.pk for e in exports]
    for part in (2, 0):
        dataset_exports_run(export_ids=ids, part=part)
    for export in exports:
        export.refresh_from_db()
        assert (export.status, sorted(export.part_results), export.files) == (
            "running",
            ["0", "2"],
            [],
        )
    dataset_exports_run(export_ids=ids, part=1)
    dataset_exports_run(export_ids=ids, part=1)  # a redelivered part does nothing
    imagefolder, webdataset, parquet = DatasetExport.objects.filter(pk__in=ids).order_by("pk")
    for export in (imagefolder, webdataset, parquet):
        assert (export.status, export.done, export.attempts) == ("succeeded", 12, 3)
        check_recorded_files(export)
    assert [f["name"] for f in imagefolder.files] == [
        f"imagefolder-{i:05d}-of-00003.tar" for i in range(3)
    ]
    rows = manifest(sticker_version)
    # a Parquet file per split and part that has entries of it, numbered within the split
    positions = DatasetEntry.objects.filter(version=sticker_version).values_list(
        "split", "position"
    )
    having = {
        split: sorted({position // 4 for s, position in positions if s == split})
        for split in ("train", "validation")
    }
    assert [f["name"] for f in parquet.files] == [
        "README.md",
        *(
            f"{split}-{i:05d}-of-{len(having[split]):05d}.parquet"
            for split in ("train", "validation")
            for i in range(len(having[split]))
        ),
    ]

    # imagefolder: each part in its own folder under each split; datasets reads them all
    root = dataset_version_local_copy(version=sticker_version)
    folders = {p.relative_to(root).as_posix() for p in root.glob("*/*/metadata.jsonl")}
    assert {f.split("/")[1] for f in folders} == {"00000", "00001", "00002"}
    assert {f.split("/")[0] for f in folders} == {"train", "validation"}
    assert not list(root.glob("*/metadata.jsonl"))
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(tmp_path))
    got = {r["candidate_id"]: (split, r["sha256"]) for split in loaded for r in loaded[split]}
    # the card every part carries says how to extract them all into one folder
    (extract,) = re.findall(r"```bash\n(.*?)\n```", (root / "README.md").read_text())
    assert extract == (
        'mkdir -p export && for f in imagefolder-*-of-00003.tar; do tar -xf "$f" -C export; done'
    )
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for item in imagefolder.files:
        shutil.copyfile(default_storage.path(item["key"]), downloads / item["name"])
    subprocess.run(["bash", "-c", extract], cwd=downloads, check=True)
    extracted = downloads / "export"
    assert sorted(p.relative_to(extracted) for p in extracted.rglob("*")) == sorted(
        p.relative_to(root) for p in root.rglob("*")
    )
    assert got == {c: (e.split, e.file_sha256) for c, e in rows.items()}
    read = [
        e.candidate_id
        for split in ("train", "validation")
        for e in read_export(root, role="main", split=split).entries
    ]
    assert sorted(read) == sorted(rows)

    # WebDataset: shard numbers run on across parts, a part starting shards of its own
    names = [f["name"] for f in webdataset.files]
    assert names.count("README.md") == 1  # the first part writes the card
    counts: dict[str, int] = {}
    for f in webdataset.files[1:]:
        with open(default_storage.path(f["key"]), "rb") as fh:
            samples = list(wds.WebDataset([fh.name], shardshuffle=False, empty_check=False))
        counts[f["name"]] = len(samples)
    assert all(1 <= n <= 3 for n in counts.values())
    for split in ("train", "validation"):
        split_names = [n for n in names if n.startswith(f"{split}-")]
        assert split_names == [f"{split}-{i:06d}.tar" for i in range(len(split_names))]
        assert sum(counts[n] for n in split_names) == sum(
            1 for e in rows.values() if e.split == split
        )

    # Parquet: each split's files hold its rows in manifest order; datasets reads them by name
    for split in ("train", "validation"):
        ordered = list(
            DatasetEntry.objects.filter(version=sticker_version, split=split)
            .order_by("position")
            .values_list("candidate_id", flat=True)
        )
        table = [
            row["candidate_id"]
            for f in parquet.files
            if f["name"].startswith(f"{split}-")
            for row in pq.read_table(default_storage.path(f["key"])).to_pylist()
        ]
        assert table == ordered
    folder = dataset_version_local_copy(version=sticker_version, export_format="parquet")
    loaded = datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path))
    got = {split: [r["candidate_id"] for r in loaded[split]] for split in loaded}
    assert got == {
        split: list(
            DatasetEntry.objects.filter(version=sticker_version, split=split)
            .order_by("position")
            .values_list("candidate_id", flat=True)
        )
        for split in ("train", "validation")
    }


def test_the_parts_of_an_export_read_the_facts_of_their_version_once(
    sticker_version, django_assert_num_queries
):
    # given: the facts of a version in 3 parts, read as its first part starts: the manifest's
    # profile and the entries per split and part
    with django_assert_num_queries(2):
        first = VersionFacts.read(sticker_version, 3)
    # when: the other parts start in the same process
    with django_assert_num_queries(0):
        again = VersionFacts.read(sticker_version, 3)
    # then: the same facts, read once
    assert again is first
    train, validation = sticker_version.train_count, sticker_version.validation_count
    assert sum(n for (split, _), n in first.counts.items() if split == "train") == train
    assert sum(n for (split, _), n in first.counts.items() if split == "validation") == validation
    per_part = {p: sum(n for (_, part), n in first.counts.items() if part == p) for p in range(3)}
    assert per_part == {0: 4, 1: 4, 2: 4}
    # and the version in another number of parts is read anew (one part needs no count query)
    with django_assert_num_queries(1):
        whole = VersionFacts.read(sticker_version, 1)
    assert whole is not first
    assert whole.counts == {("train", 0): train, ("validation", 0): validation}
    assert train + validation == 12


def test_a_failed_part_fails_the_export_and_removes_what_other_parts_stored(
    sticker_version, curator, settings, django_capture_on_commit_callbacks
):
    settings.DATASET_EXPORT_PART_ENTRIES = 5
    export = dataset_export_create(
        version=sticker_version, export_format="parquet", requested_by=curator
    )
    dataset_exports_run(export_ids=[export.pk], part=0)
    export.refresh_from_db()
    part_0_files = export.part_results["0"]["files"]
    assert "README.md" in [f["name"] for f in part_0_files]  # the first part writes the card
    stored_by_part_0 = [f["key"] for f in part_0_files]
    assert [default_storage.exists(k) for k in stored_by_part_0] == [True] * len(part_0_files)
    # a file in part 1's range (positions 4 to 7) changes
    entry = DatasetEntry.objects.get(version=sticker_version, position=5)
    default_storage.delete(entry.file_key)
    default_storage.save(entry.file_key, ContentFile(b"tampered"))
    with django_capture_on_commit_callbacks(execute=True):  # files go once the failure commits
        dataset_exports_run(export_ids=[export.pk], part=1)
    export.refresh_from_db()
    assert (export.status, export.part_results, export.files) == ("failed", {}, [])
    assert export.error.startswith(f"Candidate {entry.candidate_id}'s file")
    assert [default_storage.exists(k) for k in stored_by_part_0] == [False] * len(part_0_files)
    # the last part, finishing after the failure, leaves nothing behind either
    with django_capture_on_commit_callbacks(execute=True):
        dataset_exports_run(export_ids=[export.pk], part=2)
    export.refresh_from_db()
    assert export.status == "failed"
    assert default_storage.listdir(export.storage_prefix) == ([], [])
