"""The oracles' weights on disk: two safetensors files and ``config.json``, written and read here.

``config.json`` records the architecture, each head's value order, how the weights were trained
(stream, counts, epochs, seed), the sha256 of each weights file, and ``source_sha256``: a hash of
the renderer and oracle sources the weights were trained with (see ``SOURCES``), so a reader can
tell whether the world has changed since. Weights are stored in float16 and run in float32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .model import CLIP_HEADS, CLIP_WIDTHS, HIDDEN, IMAGE_HEADS, IMAGE_WIDTHS, clip_net, image_net

DEFAULT_FOLDER = Path(__file__).resolve().parent / "weights"
CONFIG = "config.json"
FORMAT = 1
MODELS = {"image": "image.safetensors", "animation": "animation.safetensors"}
HEADS = {"image": IMAGE_HEADS, "animation": CLIP_HEADS}
BUILDERS = {"image": image_net, "animation": clip_net}
ARCHITECTURES = {
    "image": {
        "class": "StickerNet",
        "input": "RGB over grey 128 + alpha, 4x64x64",
        "widths": list(IMAGE_WIDTHS),
        "hidden": HIDDEN,
    },
    "animation": {
        "class": "ClipNet",
        "input": "8 frames x (RGB over grey 128 + alpha), 32x64x64, and the image oracle's maps",
        "widths": list(CLIP_WIDTHS),
        "hidden": HIDDEN,
    },
}
WORLD = Path(__file__).resolve().parent.parent
# What the weights depend on: how stickers are drawn and sampled, and how the oracles are built
# and trained. Captions and the judging front end are not among them.
SOURCES = (
    "factors.py",
    "motions.py",
    "render.py",
    "sampling.py",
    "shapes.py",
    "oracle/data.py",
    "oracle/model.py",
    "oracle/train.py",
)


class OracleError(Exception):
    """Oracle weights that are missing, corrupt, or made for another world; names the file."""


def source_sha256() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (WORLD / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(folder: Path, nets: dict[str, nn.Module], training: dict) -> Path:
    """Write both networks and ``config.json`` into ``folder``; return the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "source_sha256": source_sha256(), "training": training}
    for kind, net in nets.items():
        path = folder / MODELS[kind]
        tensors = {
            name: (tensor.half() if tensor.is_floating_point() else tensor).contiguous()
            for name, tensor in net.state_dict().items()
        }
        save_file(tensors, str(path))
        config[kind] = {
            "file": MODELS[kind],
            "architecture": ARCHITECTURES[kind],
            "sha256": _sha256(path),
            "parameters": sum(p.numel() for p in net.parameters()),
            "heads": {name: list(values) for name, values in HEADS[kind].items()},
        }
    path = folder / CONFIG
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise OracleError(f"The oracle config {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OracleError(f"The oracle config {path} cannot be read: {error}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise OracleError(f"The oracle config {path} is not format {FORMAT}.")
    for kind in MODELS:
        entry = config.get(kind)
        if not isinstance(entry, dict) or not {"sha256", "heads"} <= set(entry):
            raise OracleError(f"The oracle config {path} has no valid `{kind}` entry.")
    return config


def read(folder: Path, kind: str, config: dict) -> nn.Module:
    """The ``kind`` network of ``folder`` in eval mode, float32; checks that the file is the one
    the config names and that its heads are the world's current factor values."""
    path = Path(folder) / MODELS[kind]
    if not path.is_file():
        raise OracleError(f"The oracle weights {path} do not exist.")
    entry = config[kind]
    if _sha256(path) != entry["sha256"]:
        raise OracleError(f"The oracle weights {path} do not match the sha256 in {CONFIG}.")
    expected = {name: list(values) for name, values in HEADS[kind].items()}
    if entry["heads"] != expected:
        raise OracleError(
            f"The oracle weights {path} were trained for other factor values than the world "
            "has now; retrain them with `python -m generation.world.oracle.train`."
        )
    net = BUILDERS[kind]()
    try:
        tensors = load_file(str(path))
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        )
    except (SafetensorError, RuntimeError, OSError) as error:
        raise OracleError(f"The oracle weights {path} cannot be loaded: {error}") from None
    return net.eval()


def trained_with_current_sources(config: dict) -> bool:
    return config.get("source_sha256") == source_sha256()
