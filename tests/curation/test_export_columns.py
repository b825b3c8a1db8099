"""The typed columns of a version's exports (no Django): which columns a version gets, and how
label columns of mixed types go out as the same JSON text in every format."""

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest

from training_bridge.exports.card import dataset_card
from training_bridge.exports.columns import Column, export_columns, value_type
from training_bridge.exports.writers import (
    ExportBatch,
    ImagefolderWriter,
    ParquetWriter,
    WebDatasetWriter,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False, None], "bool"),
        ([1, 5], "int64"),
        ([0.5, 1.0], "float64"),
        (["yes", None], "string"),
        ([None, None], None),
        ([], None),
        ([True, 1], "json"),  # a yes/no answer and a rating are not one type
        ([1, 0.5], "json"),
        ([{"a": 1}], "json"),
        ([[1, 2]], "json"),
    ],
)
def test_the_one_type_of_json_values(values, expected):
    assert value_type(values) == expected


def _columns(kind="image", filled=(), **label_values):
    values = {"label": [True], "labels": [{"aligned": True}], "confidences": [{}], "scores": [{}]}
    return export_columns(
        kind=kind,
        label_values={**values, **label_values},
        filled=filled,
        extensions=["png"],
        max_frames=4,
    )


def test_a_column_no_entry_fills_is_left_out():
    sticker = _columns()
    assert sticker.names == [
        "image",
        "text",
        "split",
        "candidate_id",
        "label",
        "confidence",
        "labels",
        "n_judgments",
        "model_version",
        "seed",
        "prompt",
        "sha256",
    ]
    assert sticker["labels"] == Column("labels", "struct", fields=(Column("aligned", "bool"),))
    unlabelled = _columns(label=[None], labels=[{}])
    assert "label" not in unlabelled and "labels" not in unlabelled
    # an animation version keeps frame_count; the rest only when some entry fills them
    bare = _columns(kind="animation")
    assert bare.names[-2:] == ["sha256", "frame_count"]
    assert bare.max_frames == 0
    full = _columns(kind="animation", filled=["teacher", "source", "frames", "motion_score"])
    assert full.names[-7:] == [
        "sha256",
        "teacher",
        "source_candidate_id",
        "frame_count",
        "motion_score",
        "source",
        "frames",
    ]
    assert (full["frames"].dtype, full.max_frames) == ("images", 4)


def test_label_columns_of_mixed_types_are_json_text():
    columns = _columns(
        label=[True, 3, None],
        labels=[{"aligned": True}, {"aligned": True, "quality": 4}],
        confidences=[{"quality": 1.0}, {"quality": 1}],
        scores=[{"quality": 2.5}, {"quality": 3.0}],
    )
    assert columns["label"] == Column("label", "string", json_text=True)
    # keys that differ between entries, or an int among floats, make JSON text too
    assert columns["labels"] == Column("labels", "string", json_text=True)
    assert columns["confidences"] == Column("confidences", "string", json_text=True)
    assert columns["scores"] == Column("scores", "struct", fields=(Column("quality", "float64"),))


def _batch(png: bytes) -> ExportBatch:
    return ExportBatch(
        candidate_id=[7, 8, 9],
        split=["train", "train", "validation"],
        ext=["png"] * 3,
        sha256=["a" * 64, "b" * 64, "c" * 64],
        caption=["a cat", "a dog", "a frog"],
        label_json=["true", "3", "null"],
        confidence=[1.0, 0.5, 1.0],
        labels_json=['{"aligned": true}', '{"aligned": true, "quality": 4}', '{"aligned": false}'],
        confidences_json=["{}"] * 3,
        scores_json=['{"quality": 2.5}', '{"quality": 3.0}', '{"quality": 1.5}'],
        n_judgments=[3, 3, 2],
        model_version=["base", "", "base"],
        seed=[1, 2, 3],
        prompt=["a cat", "a dog", "a frog"],
        teacher=[""] * 3,
        motion_score=[None] * 3,
        frame_count=[1] * 3,
        data=[png] * 3,
        source_candidate_id=[None] * 3,
        source_data=[None] * 3,
        frames=[[]] * 3,
    )


def test_every_format_writes_json_text_labels_alike(tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 128)).save(buffer, format="PNG")
    batch = _batch(buffer.getvalue())
    columns = _columns(
        label=[True, 3, None],
        labels=[{"aligned": True}, {"aligned": True, "quality": 4}, {"aligned": False}],
        confidences=[{}],
        scores=[{"quality": 2.5}, {"quality": 3.0}, {"quality": 1.5}],
    )
    info = {
        "dataset_version_id": 1,
        "purpose": "weak",
        "kind": "image",
        "manifest_sha256": "f" * 64,
        "entry_count": 3,
        "rule": "mixed",
        "number": 1,
        "train_count": 2,
        "validation_count": 1,
    }
    card = dataset_card(
        info=info, columns=columns, export_format="parquet", split_bytes={"train": 2}
    )
    parquet = ParquetWriter(
        tmp_path,
        dataset_info=info,
        columns=columns,
        file_names={
            "train": "train-00000-of-00001.parquet",
            "validation": "validation-00000-of-00001.parquet",
        },
        card=card,
    )
    imagefolder = ImagefolderWriter(
        tmp_path / "imagefolder.tar", dataset_info=info, columns=columns, card=card
    )
    (tmp_path / "wds").mkdir()
    webdataset = WebDatasetWriter(tmp_path / "wds", columns=columns, shard_size=10, card=None)
    for writer in (parquet, imagefolder, webdataset):
        writer.add_batch(batch)
    assert [f.name for f in parquet.close()] == [
        "README.md",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    imagefolder.close()
    webdataset.close()

    expected = [
        {"candidate_id": 7, "label": "true", "labels": '{"aligned": true}', "scores": 2.5},
        {
            "candidate_id": 8,
            "label": "3",
            "labels": '{"aligned": true, "quality": 4}',
            "scores": 3.0,
        },
        {"candidate_id": 9, "label": None, "labels": '{"aligned": false}', "scores": 1.5},
    ]

    def picked(row):
        return {
            "candidate_id": row["candidate_id"],
            "label": row["label"],
            "labels": row["labels"],
            "scores": row["scores"]["quality"],
        }

    table = [
        row
        for split in ("train", "validation")
        for row in pq.read_table(tmp_path / f"{split}-00000-of-00001.parquet").to_pylist()
    ]
    assert [picked(row) for row in table] == expected
    assert [row["model_version"] for row in table] == ["base", "", "base"]
    with tarfile.open(tmp_path / "imagefolder.tar") as archive:
        names = archive.getnames()
        metadata = [
            json.loads(line)
            for split in ("train", "validation")
            for line in archive.extractfile(f"{split}/metadata.jsonl").read().splitlines()
        ]
    assert names[-4:] == [
        "README.md",
        "dataset.json",
        "train/metadata.jsonl",
        "validation/metadata.jsonl",
    ]
    assert [picked(row) for row in metadata] == expected
    assert [row["file_name"] for row in metadata] == ["7.png", "8.png", "9.png"]
    samples = []
    for split in ("train", "validation"):
        with tarfile.open(tmp_path / "wds" / f"{split}-000000.tar") as archive:
            samples += [
                json.loads(archive.extractfile(name).read())
                for name in archive.getnames()
                if name.endswith(".json")
            ]
    assert [picked(row) for row in samples] == expected
    assert list(samples[0]) == [c.name for c in columns.record_columns()]
