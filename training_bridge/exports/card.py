"""The dataset card (``README.md``) every export carries: YAML front matter that ``datasets`` and
the Hugging Face Hub read (``configs`` naming each split's files, ``dataset_info`` with the
features and split sizes) and the version's provenance, then how to load it.

The loading snippets here are the ones the project README shows under "Reading the exports";
a test runs them, unchanged, in an environment that cannot import the project.
"""

from __future__ import annotations

import yaml

from training_bridge.exports.columns import ExportColumns

# Where each format's files lie, relative to the folder the export was downloaded or
# extracted into.
_DATA_FILES = {
    "imagefolder": "{split}/**",
    "parquet": "{split}-*.parquet",
    "webdataset": "{split}-*.tar",
}

_DATASETS = "from datasets import load_dataset\n\n"
SNIPPETS = {
    "imagefolder": {
        "bash": "mkdir -p export && tar -xf imagefolder.tar -C export",
        "python": _DATASETS + 'ds = load_dataset("imagefolder", data_dir="export")',
    },
    "parquet": {
        "python": _DATASETS + 'ds = load_dataset("parquet", data_dir="export")',
        "pyarrow": (
            "import glob\n\nimport pyarrow.parquet as pq\n\n"
            'train = pq.read_table(sorted(glob.glob("export/train-*.parquet")))'
        ),
    },
    "webdataset": {
        "python": (
            "import glob\n\nimport webdataset as wds\n\n"
            'urls = sorted(glob.glob("export/train-*.tar"))\n'
            'train = wds.WebDataset(urls, shardshuffle=False).decode("pilrgba")'
        ),
        "datasets": _DATASETS + 'ds = load_dataset("webdataset", data_dir="export")',
    },
}

_LOADING = {
    "imagefolder": (
        "Extract the archive into a folder, then load the folder as an `imagefolder`:\n\n"
        "```bash\n{extract}\n```\n\n```python\n{python}\n```\n\n"
        '`load_dataset("export")` reads this card and loads the same splits.'
    ),
    "parquet": (
        "Download the files into one folder (`export` here); images decode as RGBA "
        "`PIL.Image`s:\n\n```python\n{python}\n```\n\nWith pyarrow alone (images are "
        "`{{bytes, path}}` structs):\n\n```python\n{pyarrow}\n```"
    ),
    "webdataset": (
        'Download the shards into one folder (`export` here). Decode with `"pilrgba"`: '
        'the usual `"pil"` drops the transparency.\n\n```python\n{python}\n```\n\n'
        "With `datasets`:\n\n```python\n{datasets}\n```"
    ),
}


def _extract_command(archives: list[str]) -> str:
    if archives == ["imagefolder.tar"]:
        return SNIPPETS["imagefolder"]["bash"]
    pattern = archives[0].replace("00000-of", "*-of")
    return f'mkdir -p export && for f in {pattern}; do tar -xf "$f" -C export; done'


def card_features(columns: ExportColumns, export_format: str) -> list[dict]:
    """``dataset_info.features`` as ``datasets`` loads the format: imagefolder adds
    ``frames_dir``; a WebDataset sample is its files by extension, its ``json`` and its key."""
    if export_format == "webdataset":
        files = [{"name": ext, "dtype": "image"} for ext in columns.extensions]
        files.append(
            {"name": "json", "struct": [c.yaml_feature() for c in columns.record_columns()]}
        )
        if "source" in columns:
            files.append({"name": "source.png", "dtype": "image"})
        files += [
            {"name": f"frame-{i:03d}.png", "dtype": "image"} for i in range(columns.max_frames)
        ]
        keys = [{"name": name, "dtype": "string"} for name in ("__key__", "__url__")]
        return files + keys
    features = [c.yaml_feature() for c in columns.columns]
    if export_format == "imagefolder" and "frames" in columns:
        features.append({"name": "frames_dir", "dtype": "string"})
    return features


def dataset_card(
    *,
    info: dict,
    columns: ExportColumns,
    export_format: str,
    split_bytes: dict[str, int],
    archives: list[str] = (),
) -> str:
    """The README.md of an export of the version ``info`` describes (``dataset.json``).

    ``split_bytes``: each split's size (``datasets`` ignores split sizes without one).
    ``archives``: an imagefolder export's tar names (the card says how to extract them)."""
    counts = {"train": info["train_count"], "validation": info["validation_count"]}
    splits = [split for split, count in counts.items() if count]
    title = f"{info['rule']} v{info['number']}"
    front = {
        "pretty_name": title,
        "tags": ["stickerloop", "stickers" if info["kind"] == "image" else "sticker-animations"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": _DATA_FILES[export_format].format(split=split)}
                    for split in splits
                ],
            }
        ],
        "dataset_info": {
            "features": card_features(columns, export_format),
            "splits": [
                {
                    "name": split,
                    "num_bytes": split_bytes.get(split, 0),
                    "num_examples": counts[split],
                }
                for split in splits
            ],
        },
        "stickerloop": {
            "dataset_version_id": info["dataset_version_id"],
            "rule": info["rule"],
            "version": info["number"],
            "purpose": info["purpose"],
            "kind": info["kind"],
            "format": export_format,
            "manifest_sha256": info["manifest_sha256"],
        },
    }
    snippets = dict(SNIPPETS[export_format])
    if export_format == "imagefolder":
        snippets["extract"] = _extract_command(list(archives) or ["imagefolder.tar"])
    what = "RGBA PNG stickers" if info["kind"] == "image" else "animated WebP stickers"
    sizes = ", ".join(f"{counts[split]} {split}" for split in splits)
    body = (
        f"# {title}\n\n"
        f"Dataset version {info['dataset_version_id']} of the curation rule "
        f'"{info["rule"]}" ({info["purpose"]}): {info["entry_count"]} {what} '
        f"({sizes}), exported by Stickerloop as {export_format}.\n\n"
        f"Manifest sha256: `{info['manifest_sha256']}` (the same in every export of this "
        "version).\n\n"
        "The stickers keep their alpha channel. A model trained on RGB images needs them laid "
        'over a background first; `convert("RGB")` alone keeps whatever colour the '
        "transparent pixels hold.\n\n"
        "## Loading\n\n" + _LOADING[export_format].format(**snippets) + "\n"
    )
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body}"
