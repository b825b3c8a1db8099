"""Checkpoints of a run: which run they belong to, where they are, and saving and loading them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .spec import CHECKPOINT_PREFIX, STATE_FILE, DatasetFacts, SpecError, TrainingSpec

# Parameters that change how a run is observed or stored, not what it learns: a checkpoint
# stays usable when only these differ.
_NON_LEARNING_PARAMS = {
    "checkpointing_steps",
    "checkpoints_total_limit",
    "keep_checkpoints",
    "logging_steps",
    "record_timesteps",
    "validation_samples",
    "inference_steps",
}


def spec_fingerprint(spec: TrainingSpec, datasets: list[DatasetFacts], params: dict) -> str:
    """A hash of what determines the learned weights; checkpoints of another run are refused."""
    learning = {k: v for k, v in params.items() if k not in _NON_LEARNING_PARAMS}
    payload = {
        "recipe": spec.recipe,
        "base_model": str(Path(spec.base_model).resolve()),
        "datasets": sorted(
            (d.role, f.manifest_sha256) for d, f in zip(spec.datasets, datasets, strict=True)
        ),
        "params": learning,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (their state file written last) under ``output_dir``, oldest first."""
    folder = Path(output_dir)
    found = []
    if folder.is_dir():
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*"):
            suffix = path.name.removeprefix(CHECKPOINT_PREFIX)
            if suffix.isdigit() and (path / STATE_FILE).is_file():
                found.append((int(suffix), path))
    return sorted(found)


def save_checkpoint(
    accelerator,
    unet,
    optimizer,
    lr_scheduler,
    *,
    output_dir: Path,
    state: dict[str, Any],
    total_limit: int,
) -> Path:
    """Write ``checkpoint-<step>`` (trainable weights, optimizer, lr scheduler, state), keeping
    the newest ``total_limit`` checkpoints.

    Written into a temporary folder renamed into place, with the state file last, so a
    crash mid-write never leaves a checkpoint that ``list_checkpoints`` would pick.
    """
    from safetensors.torch import save_file

    final = output_dir / f"{CHECKPOINT_PREFIX}{state['step']}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        staging = output_dir / f".{final.name}.tmp"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        model = accelerator.unwrap_model(unet)
        weights = {
            name: param.detach().to("cpu", torch.float32).contiguous()
            for name, param in model.named_parameters()
            if param.requires_grad
        }
        save_file(weights, str(staging / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), staging / "scheduler.pt")
        (staging / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
        for _, old in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    path: Path,
    model,
    optimizer,
    lr_scheduler,
    *,
    fingerprint: str,
    trainable_names: list[str],
) -> dict[str, Any]:
    """Load checkpoint ``path`` into the (unwrapped) model, the optimizer and the lr scheduler.

    Returns the checkpoint's state (step, fingerprint, recipe, last_loss).

    Raises:
        SpecError: the checkpoint was made by a different run, or lacks trainable tensors.
    """
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("fingerprint") != fingerprint:
        raise SpecError(
            "resume_from_checkpoint",
            f"Checkpoint {path} was made by a different run (recipe, base model, datasets or "
            f"learning parameters differ); remove it or use another output_dir.",
        )
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"), device="cpu")
    missing = set(trainable_names) - set(weights)
    if missing:
        raise SpecError(
            "resume_from_checkpoint",
            f"Checkpoint {path} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[0]}.",
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device))
    optimizer.load_state_dict(
        torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    )
    lr_scheduler.load_state_dict(
        torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True)
    )
    return state
