"""The model card (README.md) written beside a trained model: recipe, datasets, parameters,
metrics. Front matter in the Hugging Face model card format, so hub tooling can read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECIPE_TITLES = {
    "finetune": "Finetuning",
    "sequential": "Sequential finetuning (first dataset, then second)",
    "style_tailoring": "Style Tailoring (content on high-noise timesteps, style on low-noise ones)",
    "distill_student": "Student trained on an ensemble of teachers' selected animations",
}


def _value(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, sort_keys=True)}`"
    return f"`{value}`"


def render_model_card(summary: dict[str, Any]) -> str:
    """The card's Markdown for a training summary (see loop.Trainer.summary)."""
    recipe = summary["recipe"]
    metrics = summary.get("metrics", {})
    job = summary.get("job") or {}
    lines = [
        "---",
        "library_name: diffusers",
        f"base_model: {summary['base_model']}",
        "tags:",
        "- stickerloop",
        f"- {recipe}",
        f"- {summary['model_kind']}",
        "---",
        "",
        f"# {job.get('name') or 'Stickerloop model'}",
        "",
        f"Recipe: **{recipe}**, {RECIPE_TITLES.get(recipe, recipe)}. Base model: "
        f"`{summary['base_model']}` ({summary['model_kind']}, {summary['prediction_type']} "
        f"prediction, {summary['num_train_timesteps']} train timesteps).",
        "",
    ]
    if job:
        lines += [f"Training job: `{json.dumps(job, sort_keys=True)}`", ""]
    lines += [
        "## Datasets",
        "",
        "| role | dataset version | purpose | kind | entries | validation | manifest sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in summary["datasets"]:
        lines.append(
            f"| {d['role']} | {d.get('dataset_version_id') or '-'} | {d['purpose']} | {d['kind']} "
            f"| {d['entries']} | {d.get('validation_entries', 0)} | `{d['manifest_sha256']}` |"
        )
    if metrics.get("teacher_counts"):
        lines += [
            "",
            "Entries per teacher: "
            + ", ".join(f"{name}: {count}" for name, count in metrics["teacher_counts"].items()),
        ]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    for name, value in sorted(summary["params"].items()):
        lines.append(f"| {name} | {_value(value)} |")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for name, value in sorted(metrics.items()):
        lines.append(f"| {name} | {_value(value)} |")
    if summary.get("default_params"):
        lines += ["", "Suggested inference parameters: " + _value(summary["default_params"])]
    return "\n".join(lines) + "\n"


def write_model_card(path: str | Path, summary: dict[str, Any]) -> None:
    Path(path).write_text(render_model_card(summary), encoding="utf-8")
