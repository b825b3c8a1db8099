"""The trained model's output folder: the diffusers pipeline, its model card and its summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .checkpoints import list_checkpoints
from .data import ExportedDataset
from .model_card import write_model_card
from .spec import SUMMARY_FILE, DatasetFacts, ModelFacts, SpecError, TrainingSpec


def trained_unet(unet, *, method: str, output_dir: Path):
    """The UNet to save: LoRA adapters merged in (the adapter is also saved on its own)."""
    if method == "lora":
        unet.save_lora_adapter(str(output_dir / "unet_lora"))
        unet.fuse_lora()
        unet.unload_lora()
    return unet.to("cpu").eval()


def save_output(
    pipe,
    unet,
    *,
    output_dir: Path,
    summary: dict[str, Any],
    is_animation: bool,
    keep_checkpoints: bool,
) -> None:
    """Write the model as a diffusers pipeline with ``unet``, its model card and ``summary``;
    drop the checkpoints unless ``keep_checkpoints``.

    The summary is written last: its presence means the folder is complete.
    """
    pipe.unet = unet
    for module in (pipe.vae, pipe.text_encoder):
        module.to("cpu")
        if module.dtype != torch.float32:
            module.to(dtype=torch.float32)
    if is_animation and getattr(pipe, "motion_adapter", None) is not None:
        # Keep the saved motion adapter equal to the trained motion modules (the inverse of
        # UNetMotionModel.load_motion_modules), so the folder is consistent either way.
        adapter = pipe.motion_adapter
        for i, block in enumerate(adapter.down_blocks):
            block.motion_modules.load_state_dict(unet.down_blocks[i].motion_modules.state_dict())
        for i, block in enumerate(adapter.up_blocks):
            block.motion_modules.load_state_dict(unet.up_blocks[i].motion_modules.state_dict())
        if adapter.mid_block is not None and hasattr(unet.mid_block, "motion_modules"):
            adapter.mid_block.motion_modules.load_state_dict(
                unet.mid_block.motion_modules.state_dict()
            )
    pipe.save_pretrained(str(output_dir), safe_serialization=True)
    write_model_card(output_dir / "README.md", summary)
    (output_dir / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8"
    )
    if not keep_checkpoints:
        for _, path in list_checkpoints(output_dir):
            shutil.rmtree(path, ignore_errors=True)


def training_summary(
    spec: TrainingSpec,
    model_facts: ModelFacts,
    dataset_facts: list[DatasetFacts],
    params: dict[str, Any],
    metrics: dict[str, Any],
    *,
    datasets: dict[str, ExportedDataset],
    validation: dict[str, ExportedDataset],
    fingerprint: str,
    is_animation: bool,
) -> dict[str, Any]:
    """What ``training_summary.json`` and the model card record about a finished run."""
    default_params = {}
    if "inference_steps" in params:
        default_params["num_inference_steps"] = params["inference_steps"]
    if is_animation:
        default_params["num_frames"] = params["num_frames"]
    return {
        "recipe": spec.recipe,
        "base_model": str(spec.base_model),
        "model_kind": model_facts.kind,
        "prediction_type": model_facts.prediction_type,
        "num_train_timesteps": model_facts.num_train_timesteps,
        "datasets": [
            {
                "role": d.role,
                "path": d.path,
                "dataset_version_id": f.dataset_version_id,
                "purpose": f.purpose,
                "kind": f.kind,
                "manifest_sha256": f.manifest_sha256,
                "entries": len(datasets[d.role].entries),
                "validation_entries": len(validation[d.role].entries),
            }
            for d, f in zip(spec.datasets, dataset_facts, strict=True)
        ],
        "params": params,
        "metrics": metrics,
        "default_params": default_params,
        "fingerprint": fingerprint,
        "job": spec.job,
    }


def read_summary(output_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The summary in ``output_dir`` when a previous process completed this same run there.

    Raises:
        SpecError: ``output_dir`` holds the output of a different run.
    """
    summary_path = output_dir / SUMMARY_FILE
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary.get("fingerprint") != fingerprint:
        raise SpecError(
            "output_dir",
            f"{output_dir} already holds the output of a different run; choose another output_dir.",
        )
    return summary
