"""Django-free training recipes: finetune, sequential, Style Tailoring, student distillation.

Entry point: ``python -m training_bridge.recipes.train`` (see train.py), or ``train(spec)``.
Names are resolved lazily (PEP 562): the web process imports the spec checks and the progress
parser without paying for torch and diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from generation.pipelines.lazy import lazy_names

_EXPORTS = {
    "RECIPES": "spec",
    "RECIPE_ROLES": "spec",
    "ROLE_PURPOSES": "spec",
    "RECIPE_MODEL_KINDS": "spec",
    "PARAMS": "spec",
    "SpecError": "spec",
    "DatasetSpec": "spec",
    "TrainingSpec": "spec",
    "ModelFacts": "spec",
    "DatasetFacts": "spec",
    "check_spec": "spec",
    "check_roles": "spec",
    "check_dataset_fits": "spec",
    "resolve_params": "spec",
    "read_model_facts": "spec",
    "read_dataset_facts": "spec",
    "emit": "progress",
    "format_event": "progress",
    "parse_line": "progress",
    "read_export": "data",
    "Trainer": "loop",
    "TrainingResult": "loop",
    "list_checkpoints": "checkpoints",
    "SUMMARY_FILE": "spec",
    "train": "train",
    "main": "train",
    "render_model_card": "model_card",
}

__all__ = [
    "DatasetFacts",
    "DatasetSpec",
    "ModelFacts",
    "PARAMS",
    "RECIPES",
    "RECIPE_MODEL_KINDS",
    "RECIPE_ROLES",
    "ROLE_PURPOSES",
    "SUMMARY_FILE",
    "SpecError",
    "Trainer",
    "TrainingResult",
    "TrainingSpec",
    "check_dataset_fits",
    "check_roles",
    "check_spec",
    "emit",
    "format_event",
    "list_checkpoints",
    "main",
    "parse_line",
    "read_dataset_facts",
    "read_export",
    "read_model_facts",
    "render_model_card",
    "resolve_params",
    "train",
]

if TYPE_CHECKING:
    from .checkpoints import list_checkpoints
    from .data import read_export
    from .loop import Trainer, TrainingResult
    from .model_card import render_model_card
    from .progress import emit, format_event, parse_line
    from .spec import (
        PARAMS,
        RECIPE_MODEL_KINDS,
        RECIPE_ROLES,
        RECIPES,
        ROLE_PURPOSES,
        SUMMARY_FILE,
        DatasetFacts,
        DatasetSpec,
        ModelFacts,
        SpecError,
        TrainingSpec,
        check_dataset_fits,
        check_roles,
        check_spec,
        read_dataset_facts,
        read_model_facts,
        resolve_params,
    )
    from .train import main, train


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
