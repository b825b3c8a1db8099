"""Captions of dataset entries: where a rule's caption comes from, and prompt normalising."""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

from training_bridge.models import CaptionSource

if TYPE_CHECKING:
    from training_bridge.curation import RuleSpec

CAPTION_PLACEHOLDERS = ("prompt", "enhanced_prompt", "motion_prompt")
_SPACES = re.compile(r"\s+")


def normalise_prompt(text: str) -> str:
    """The prompt as the split and the cap see it: case and spacing do not make a new prompt."""
    return _SPACES.sub(" ", text).strip().casefold()


def caption_for(spec: RuleSpec, row: dict) -> str:
    raw = row["raw_prompt"]
    if spec.caption_source == CaptionSource.ENHANCED_PROMPT:
        return row["enhanced_prompt"] or raw
    if spec.caption_source == CaptionSource.MOTION_PROMPT:
        return row["motion_prompt"] or raw
    if spec.caption_source == CaptionSource.TEMPLATE:
        return spec.caption_template.format_map(
            {
                "prompt": raw,
                "enhanced_prompt": row["enhanced_prompt"] or raw,
                "motion_prompt": row["motion_prompt"] or raw,
            }
        )
    return raw


def template_errors(template: str) -> list[str]:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"The template is malformed: {exc}."]
    unknown = sorted({f for f in fields if f not in CAPTION_PLACEHOLDERS})
    if unknown:
        return [
            f"Unknown placeholder {{{unknown[0]}}}: use "
            + ", ".join(f"{{{p}}}" for p in CAPTION_PLACEHOLDERS)
            + "."
        ]
    return []
