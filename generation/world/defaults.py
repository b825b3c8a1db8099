"""The sticker world's trained default models: committed weights, checked and installed.

``weights/`` holds the models ``python -m training_bridge.recipes.world_models`` built, with
``manifest.json`` recording each file's SHA-256 and each model's kind and role; ``INFERENCE``
gives each its default inference parameters and description. ``install_default_models``
copies them into a models folder after checking every file against the manifest, so a missing
or corrupt file is refused by name instead of loading as a broken model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
ROLE_ORDER = ("base", "teacher", "student")

# How each model is run by default. Inference settings, not weights: they can change without a
# rebuild, so they live here rather than in the build's fingerprinted code.
IMAGE_PARAMS: dict[str, Any] = {
    "num_inference_steps": 20,
    "guidance_scale": 4.0,
    "width": 64,
    "height": 64,
}
TEACHER_PARAMS: dict[str, Any] = {**IMAGE_PARAMS, "num_inference_steps": 12, "num_frames": 8}
# The student runs at half the teachers' steps, as distillation promises.
STUDENT_PARAMS: dict[str, Any] = {**TEACHER_PARAMS, "num_inference_steps": 6}
INFERENCE: dict[str, tuple[dict[str, Any], str]] = {
    "sticker-base": (
        IMAGE_PARAMS,
        "Sticker-world base text-to-sticker model (RGBA VAE, word-level text encoder), trained "
        "from scratch on the weak corpus.",
    ),
    "anim-teacher-a": (
        TEACHER_PARAMS,
        "Sticker-world teacher A: motion modules trained on bouncing clips; it makes stickers "
        "bounce.",
    ),
    "anim-teacher-b": (
        TEACHER_PARAMS,
        "Sticker-world teacher B: motion modules trained on spinning clips; it makes stickers "
        "spin.",
    ),
    "anim-student": (
        STUDENT_PARAMS,
        "Sticker-world student: smaller motion modules, briefly trained on every motion.",
    ),
}


class DefaultModelsError(ValueError):
    """A default model folder or file is missing or does not match its manifest."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_weights(folder: str | Path = WEIGHTS_DIR) -> bool:
    """Whether ``folder`` holds built weights (a manifest); the build writes it last."""
    return (Path(folder) / MANIFEST).is_file()


def read_manifest(folder: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DefaultModelsError(f"The default models' manifest {path} is missing.") from exc
    except json.JSONDecodeError as exc:
        raise DefaultModelsError(f"The default models' manifest {path} is not JSON.") from exc
    models = manifest.get("models")
    if not isinstance(models, dict) or not models or not isinstance(manifest.get("files"), dict):
        raise DefaultModelsError(f"The manifest {path} lists no models or no files.")
    unknown = sorted(set(models) - set(INFERENCE))
    if unknown:
        raise DefaultModelsError(f"The manifest {path} names unknown models: {', '.join(unknown)}.")
    return manifest


def _in_order(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Models in registration order: the image model first, then teachers, then students."""
    return sorted(
        manifest["models"].items(),
        key=lambda item: (item[1]["kind"] != "image", ROLE_ORDER.index(item[1]["role"]), item[0]),
    )


def verify(folder: Path, manifest: dict[str, Any], name: str) -> None:
    """Check every file of model ``name`` under ``folder`` against ``manifest``."""
    files = {key: digest for key, digest in manifest["files"].items() if key.startswith(f"{name}/")}
    if not files:
        raise DefaultModelsError(f"The manifest lists no files for {name}.")
    for key, digest in sorted(files.items()):
        path = folder / key
        if not path.is_file():
            raise DefaultModelsError(f"The default model file {path} is missing.")
        if _sha256(path) != digest:
            raise DefaultModelsError(
                f"The default model file {path} does not match its recorded SHA-256 (corrupt or "
                "changed); rebuild with `python -m training_bridge.recipes.world_models`."
            )


def _copy_model(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a staging folder renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        # Web and worker processes may run as other users and must be able to read the model.
        for path in (staging, *staging.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def install_default_models(
    root: str | Path, *, source: str | Path = WEIGHTS_DIR
) -> list[dict[str, Any]]:
    """Install the trained default models under ``root`` and describe them.

    Every committed file is checked against the manifest first; a folder under ``root`` that
    already matches is kept (a re-run takes well under a second), a missing or changed one is
    copied again. Returns one dict per model: ``name``, ``kind``, ``role``, ``uri`` (absolute
    folder), ``default_params`` and ``description``.

    Raises:
        DefaultModelsError: the manifest or a committed file is missing or corrupt; the message
            names the file.
    """
    source = Path(source)
    root = Path(root).absolute()
    manifest = read_manifest(source)
    ordered = _in_order(manifest)
    # Every committed file is checked before anything is copied, so a bad one leaves the
    # models folder as it was.
    for name, _ in ordered:
        verify(source, manifest, name)
    models = []
    for name, described in ordered:
        target = root / name
        try:
            verify(root, manifest, name)
        except DefaultModelsError:
            _copy_model(source / name, target)
        models.append(
            {
                "name": name,
                "kind": described["kind"],
                "role": described["role"],
                "uri": str(target),
                "default_params": dict(INFERENCE[name][0]),
                "description": INFERENCE[name][1],
            }
        )
    return models
