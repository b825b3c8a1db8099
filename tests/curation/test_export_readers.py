"""Every export loads the way the field loads it: the snippets under "Reading the exports" in
README.md run unchanged in a subprocess whose Python can import datasets, webdataset and pyarrow
(and what they need) but not this project, and what they load is checked against the manifest:
splits, column types (the same in every format, none null), values and RGBA images."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from django.core.files.storage import default_storage
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

from tests.curation.export_helpers import export_now, manifest, stored
from training_bridge.exports.card import SNIPPETS

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"
READERS = ("datasets[vision]", "webdataset", "pyarrow")


def _requirements(roots) -> list[str]:
    """The installed distributions ``roots`` need, extras and markers taken into account."""
    wanted: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = wanted.get(name)
        if extras is not None and set(requirement.extras) <= extras:
            continue
        wanted[name] = (extras or set()) | set(requirement.extras)
        for text in metadata.distribution(name).requires or []:
            dependency = Requirement(text)
            if dependency.marker is not None and not any(
                dependency.marker.evaluate({"extra": extra}) for extra in wanted[name] | {""}
            ):
                continue
            try:
                metadata.distribution(dependency.name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency this venv does without
            todo.append(dependency)
    return sorted(wanted)


@pytest.fixture(scope="session")
def reader_site(tmp_path_factory) -> Path:
    """A site folder holding only the readers and their dependencies, linked from this venv.
    The venv's own site-packages also holds the project's editable-install hook; this one
    does not."""
    site = tmp_path_factory.mktemp("reader-site")
    installed = Path(sysconfig.get_paths()["purelib"])
    for name in _requirements(READERS):
        for path in metadata.distribution(name).files or []:
            top = path.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if (installed / top).exists() and not (site / top).exists():
                (site / top).symlink_to(installed / top)
    return site


def _run(site: Path, cwd: Path, code: str) -> dict | list:
    """Run ``code`` with the readers' Python in ``cwd``; its last printed line, as JSON."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "HF_HOME": str(cwd / ".hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(site),
    }
    # -S: no site-packages (the project's editable install lives there); -P: not the cwd either.
    result = subprocess.run(
        [sys.executable, "-S", "-P", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _shell(cwd: Path, command: str) -> None:
    subprocess.run(["bash", "-c", command], cwd=cwd, check=True, timeout=60)


def readme_blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of the README's "Reading the exports" section: (language, code)."""
    text = README.read_text()
    section = text.split("\n## Reading the exports\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w+)\n(.*?)\n```$", section, flags=re.S | re.M)


def readme_snippet(language: str, needle: str) -> str:
    found = [code for lang, code in readme_blocks() if lang == language and needle in code]
    assert len(found) == 1, (language, needle, found)
    return found[0]


# Appended to a snippet: describes what it loaded as JSON (images by mode, format, frame count
# and a hash of their pixels; bytes by their sha256 and the mode they decode to).
_DESCRIBE = """
import hashlib as _hashlib
import io as _io
import json as _json

import PIL.Image as _Image


def _describe(value):
    if isinstance(value, _Image.Image):
        return {
            "mode": value.mode,
            "format": value.format,
            "frames": getattr(value, "n_frames", 1),
            "pixels": _hashlib.sha256(value.tobytes()).hexdigest(),
        }
    if isinstance(value, bytes):
        return {
            "sha256": _hashlib.sha256(value).hexdigest(),
            "mode": _Image.open(_io.BytesIO(value)).mode,
        }
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_describe(v) for v in value]
    return value


def _dataset_dict(ds):
    return {
        split: {
            "features": ds[split].features.to_dict(),
            "rows": [_describe(row) for row in ds[split]],
        }
        for split in ds
    }
"""


def _with_report(snippet: str, report: str) -> str:
    return f"{snippet}\n{_DESCRIBE}\nprint(_json.dumps({report}))\n"


def _image(data: bytes) -> dict:
    """What ``_describe`` says of the image in ``data``."""
    image = Image.open(io.BytesIO(data))
    return {
        "mode": image.mode,
        "format": image.format,
        "frames": getattr(image, "n_frames", 1),
        "pixels": hashlib.sha256(image.tobytes()).hexdigest(),
    }


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


IMAGE = {"_type": "Image"}
STICKER_FEATURES = {
    "image": IMAGE,
    "text": _value("string"),
    "split": _value("string"),
    "candidate_id": _value("int64"),
    "label": _value("bool"),
    "confidence": _value("float64"),
    "labels": {"aligned": _value("bool"), "quality": _value("int64")},
    "confidences": {"aligned": _value("float64"), "quality": _value("float64")},
    "scores": {"quality": _value("float64")},
    "n_judgments": _value("int64"),
    "model_version": _value("string"),
    "seed": _value("int64"),
    "prompt": _value("string"),
    "sha256": _value("string"),
}
ANIMATION_FEATURES = {
    **{k: v for k, v in STICKER_FEATURES.items() if k not in ("labels", "confidences", "scores")},
    "labels": {"motion_pass": _value("bool")},
    "confidences": {"motion_pass": _value("float64")},
    "teacher": _value("string"),
    "source_candidate_id": _value("int64"),
    "frame_count": _value("int64"),
    "motion_score": _value("float64"),
    "source": IMAGE,
    "frames": {"feature": IMAGE, "_type": "List"},
}
# In the order every format writes them.
ANIMATION_ORDER = [
    *(k for k in STICKER_FEATURES if k != "scores"),
    "teacher",
    "source_candidate_id",
    "frame_count",
    "motion_score",
    "source",
    "frames",
]
ANIMATION_FEATURES = {k: ANIMATION_FEATURES[k] for k in ANIMATION_ORDER}
FILE_COLUMNS = ("image", "source", "frames")


def _record(entry, columns) -> dict:
    """The entry's non-file columns as the exports must give them."""
    values = {
        "text": entry.caption,
        "split": entry.split,
        "candidate_id": entry.candidate_id,
        "label": entry.label,
        "confidence": entry.confidence,
        "labels": entry.labels,
        "confidences": entry.confidences,
        "scores": entry.scores,
        "n_judgments": entry.n_judgments,
        "model_version": entry.model_version_name,
        "seed": entry.seed,
        "prompt": entry.prompt_text,
        "sha256": entry.file_sha256,
        "teacher": entry.teacher,
        "source_candidate_id": entry.source_candidate_id,
        "frame_count": entry.frame_count,
        "motion_score": entry.motion_score,
    }
    return {name: values[name] for name in columns if name not in FILE_COLUMNS}


def _types(value):
    """The Python types inside ``value``, so that True and 1 tell apart."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value).__name__


def _no_null_types(features) -> bool:
    return "null" not in json.dumps(features)


def _check_rows(loaded: dict, version, features: dict, extra_columns=()) -> None:
    """``loaded``: a DatasetDict described by ``_dataset_dict``."""
    rows = manifest(version)
    counts = {"train": version.train_count, "validation": version.validation_count}
    assert {split: len(part["rows"]) for split, part in loaded.items()} == {
        split: n for split, n in counts.items() if n
    }
    for split, part in loaded.items():
        assert part["features"] == {**features, **{c: _value("string") for c in extra_columns}}
        assert _no_null_types(part["features"])
        for row in part["rows"]:
            entry = rows[row["candidate_id"]]
            assert entry.split == split
            expected = _record(entry, features)
            got = {k: row[k] for k in expected}
            assert got == expected
            assert _types(got) == _types(expected)
            assert row["image"] == _image(stored(entry.file_key))
            if "source" in features:
                assert row["source"] == _image(stored(entry.source_file_key))
                assert row["frames"] == [
                    _image(stored(f"{entry.frames_prefix}frame-{i:03d}.png"))
                    for i in range(entry.frame_count)
                ]


def _export_folder(version, fmt, user, cwd: Path, shard_size=None) -> Path:
    """The export's files, downloaded into ``cwd/export``."""
    export = export_now(version, fmt, user, shard_size=shard_size)
    folder = cwd / "export"
    folder.mkdir(parents=True)
    for item in export.files:
        shutil.copyfile(default_storage.path(item["key"]), folder / item["name"])
    return folder


def _card(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _card_features(card: dict) -> dict:
    from datasets import Features

    return Features._from_yaml_list(card["dataset_info"]["features"]).to_dict()


def test_the_readme_shows_the_snippets_the_cards_show():
    shown = {(lang, code) for lang, code in readme_blocks()}
    for fmt, snippets in SNIPPETS.items():
        for code in snippets.values():
            language = "bash" if code.startswith("mkdir") else "python"
            assert (language, code) in shown, fmt
    assert "--train_data_dir=export/train" in readme_snippet("bash", "train_text_to_image.py")


def test_the_readers_environment_cannot_import_the_project(reader_site, tmp_path):
    code = (
        "import importlib.util, json\n"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
        "('datasets', 'webdataset', 'pyarrow', 'PIL', 'training_bridge', 'stickerloop', "
        "'django', 'torch')}))"
    )
    assert _run(reader_site, tmp_path, code) == {
        "datasets": True,
        "webdataset": True,
        "pyarrow": True,
        "PIL": True,
        "training_bridge": False,
        "stickerloop": False,
        "django": False,
        "torch": False,
    }


@pytest.mark.parametrize(
    ("fixture", "features"),
    [("sticker_version", STICKER_FEATURES), ("animation_version", ANIMATION_FEATURES)],
)
def test_imagefolder_loads_with_the_readme_one_liner(
    fixture, features, curator, reader_site, tmp_path, request
):
    version = request.getfixturevalue(fixture)
    export = export_now(version, "imagefolder", curator)
    shutil.copyfile(default_storage.path(export.files[0]["key"]), tmp_path / "imagefolder.tar")
    _shell(tmp_path, readme_snippet("bash", "tar -xf"))
    one_liner = readme_snippet("python", 'load_dataset("imagefolder"')
    # diffusers' train_text_to_image.py loads `--train_data_dir` so (its own code, not ours)
    train_dir = re.search(
        r"--train_data_dir=(\S+)", readme_snippet("bash", "train_text_to_image.py")
    )[1]
    diffusers = (
        f"import os\ndataset = load_dataset('imagefolder', data_files="
        f"{{'train': os.path.join({train_dir!r}, '**')}})"
    )
    loaded = _run(
        reader_site,
        tmp_path,
        _with_report(
            f'{one_liner}\ncard = load_dataset("export")\n{diffusers}',
            "{'one_liner': _dataset_dict(ds), 'card': _dataset_dict(card), "
            "'diffusers': _dataset_dict(dataset)}",
        ),
    )
    extra = ["frames_dir"] if "frames" in features else []
    _check_rows(loaded["one_liner"], version, features, extra)
    assert loaded["card"] == loaded["one_liner"]
    # the example's glob under train/ finds the training rows and no others
    assert loaded["diffusers"] == {"train": loaded["one_liner"]["train"]}
    card = _card(tmp_path / "export" / "README.md")
    assert _card_features(card) == loaded["one_liner"]["train"]["features"]
    assert card["stickerloop"] == {
        "dataset_version_id": version.pk,
        "rule": version.rule.name,
        "version": version.number,
        "purpose": version.purpose,
        "kind": version.kind,
        "format": "imagefolder",
        "manifest_sha256": version.manifest_sha256,
    }
    assert [(s["name"], s["num_examples"]) for s in card["dataset_info"]["splits"]] == [
        (split, n)
        for split, n in (("train", version.train_count), ("validation", version.validation_count))
        if n
    ]


@pytest.mark.parametrize(
    ("fixture", "features"),
    [("sticker_version", STICKER_FEATURES), ("animation_version", ANIMATION_FEATURES)],
)
def test_parquet_loads_with_datasets_and_pyarrow_as_the_readme_says(
    fixture, features, curator, reader_site, tmp_path, request
):
    version = request.getfixturevalue(fixture)
    _export_folder(version, "parquet", curator, tmp_path)
    with_datasets = readme_snippet("python", 'load_dataset("parquet"')
    with_pyarrow = readme_snippet("python", "import pyarrow")
    loaded = _run(
        reader_site,
        tmp_path,
        _with_report(
            f'{with_datasets}\ncard = load_dataset("export")\n{with_pyarrow}',
            "{'one_liner': _dataset_dict(ds), 'card': _dataset_dict(card), "
            "'pyarrow': {'schema': {f.name: str(f.type) for f in train.schema}, "
            "'rows': [_describe(row) for row in train.to_pylist()]}}",
        ),
    )
    _check_rows(loaded["one_liner"], version, features)
    assert loaded["card"] == loaded["one_liner"]
    assert _card_features(_card(tmp_path / "export" / "README.md")) == features

    # pyarrow alone: the same values, images as the stored files' bytes
    rows = manifest(version)
    table = loaded["pyarrow"]
    assert list(table["schema"]) == list(features)
    assert (table["schema"]["label"], table["schema"]["image"]) == (
        "bool",
        "struct<bytes: binary, path: string>",
    )
    assert len(table["rows"]) == version.train_count
    for row in table["rows"]:
        entry = rows[row["candidate_id"]]
        assert {k: row[k] for k in _record(entry, features)} == _record(entry, features)
        assert row["image"]["bytes"] == {"sha256": entry.file_sha256, "mode": "RGBA"}


@pytest.mark.parametrize(
    ("fixture", "features"),
    [("sticker_version", STICKER_FEATURES), ("animation_version", ANIMATION_FEATURES)],
)
def test_webdataset_loads_with_pilrgba_and_with_datasets(
    fixture, features, curator, reader_site, tmp_path, request
):
    version = request.getfixturevalue(fixture)
    _export_folder(version, "webdataset", curator, tmp_path, shard_size=5)
    with_webdataset = readme_snippet("python", "import webdataset")
    with_datasets = readme_snippet("python", 'load_dataset("webdataset"')
    loaded = _run(
        reader_site,
        tmp_path,
        _with_report(
            f'{with_webdataset}\n{with_datasets}\ncard = load_dataset("export")',
            "{'webdataset': [_describe(sample) for sample in train], "
            "'datasets': _dataset_dict(ds), 'card': _dataset_dict(card)}",
        ),
    )
    rows = manifest(version)
    animation = "source" in features
    extension = "webp" if animation else "png"
    record = {k: v for k, v in features.items() if k not in FILE_COLUMNS}

    # webdataset with "pilrgba": every image RGBA, the JSON typed as in the other formats
    samples = loaded["webdataset"]
    assert sorted(int(s["__key__"]) for s in samples) == sorted(
        c for c, e in rows.items() if e.split == "train"
    )
    for sample in samples:
        entry = rows[int(sample["__key__"])]
        expected = _record(entry, features)
        assert sample["json"] == expected and _types(sample["json"]) == _types(expected)
        assert list(sample["json"]) == list(record)
        image = _image(stored(entry.file_key))
        # webdataset decodes every picture as a still RGBA image (an animation's first frame)
        assert sample[extension] == {**image, "format": None, "frames": 1}
        if animation:
            assert sample["source.png"]["mode"] == "RGBA"
            assert [sample[f"frame-{i:03d}.png"]["mode"] for i in range(4)] == ["RGBA"] * 4

    # datasets: a sample's files by extension and its json, with the same types
    files = {extension: IMAGE}
    if animation:
        files.update({"source.png": IMAGE, **{f"frame-{i:03d}.png": IMAGE for i in range(4)}})
    sample_features = {
        **files,
        "json": record,
        "__key__": _value("string"),
        "__url__": _value("string"),
    }
    assert list(loaded["datasets"]) == [
        split
        for split, n in (("train", version.train_count), ("validation", version.validation_count))
        if n
    ]
    for split, part in loaded["datasets"].items():
        assert part["features"] == sample_features
        assert len(part["rows"]) == sum(1 for e in rows.values() if e.split == split)
        for row in part["rows"]:
            entry = rows[row["json"]["candidate_id"]]
            assert row["json"] == _record(entry, features)
            assert row[extension] == _image(stored(entry.file_key))
    assert loaded["card"] == loaded["datasets"]
    assert _card_features(_card(tmp_path / "export" / "README.md")) == sample_features
