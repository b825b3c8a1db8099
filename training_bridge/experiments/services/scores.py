"""Scores from instruments outside the platform (the sticker world's oracle judges, a metric
script): written through the API, shown beside the raters' and the platform's own.

The platform never runs such an instrument itself: the oracle is an evaluation instrument that
no generation, rating, curation or training path may import (tests/test_layers.py), so whoever
runs it posts what it measured here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from training_bridge.experiments.models import (
    AXES_BY_KIND,
    UNIT_AXES,
    Experiment,
    ExperimentScore,
    ScoreSource,
)

MAX_SCORES = 500
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class ScoreEntry:
    """One figure as an instrument reports it."""

    arm_id: int
    axis: str
    source: str
    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None
    method: str = ""
    details: dict = field(default_factory=dict)


def _entry_errors(entry: ScoreEntry, *, arm_ids: set[int], axes: tuple[str, ...]) -> dict:
    errors: dict[str, list[str]] = {}
    if entry.arm_id not in arm_ids:
        errors["arm"] = [f"Arm {entry.arm_id} is not an arm of this experiment."]
    if entry.axis not in axes:
        errors["axis"] = [f"Unknown axis {entry.axis!r} here; use one of {', '.join(axes)}."]
    if not SOURCE_RE.match(entry.source or ""):
        errors["source"] = [
            "A source is a lower-case name of at most 40 letters, digits, - and _, e.g. oracle."
        ]
    elif entry.source in ScoreSource.values:
        errors["source"] = [f"The source {entry.source!r} is the platform's own; name yours."]
    bounds = [("value", entry.value), ("low", entry.low), ("high", entry.high)]
    for name, number in bounds:
        if number is None:
            continue
        if not math.isfinite(number):
            errors[name] = ["Must be a finite number."]
        elif entry.axis in UNIT_AXES and not 0.0 <= number <= 1.0:
            errors[name] = [f"Figures of {entry.axis} lie between 0 and 1, not {number}."]
        elif number < 0:
            errors[name] = [f"Must not be negative, not {number}."]
    if not errors:
        if entry.low is not None and entry.low > entry.value:
            errors["low"] = [f"The interval's low end {entry.low} is above the value."]
        if entry.high is not None and entry.high < entry.value:
            errors["high"] = [f"The interval's high end {entry.high} is below the value."]
    return errors


@transaction.atomic
def experiment_scores_record(
    *,
    experiment: Experiment,
    entries: list[ScoreEntry],
    recorded_by: AbstractBaseUser | None = None,
) -> list[ExperimentScore]:
    """Store an instrument's scores (one per arm, axis and source: a second report of the same
    replaces the first). All or nothing: any bad entry is refused with a ValidationError keyed
    ``scores.<index>.<field>`` and nothing is stored."""
    if not 1 <= len(entries) <= MAX_SCORES:
        raise ValidationError({"scores": [f"Give 1 to {MAX_SCORES} scores, not {len(entries)}."]})
    arms = {arm.pk: arm for arm in experiment.arms.all()}
    axes = AXES_BY_KIND[experiment.kind]
    errors: dict[str, list[str]] = {}
    seen: dict[tuple, int] = {}
    for index, entry in enumerate(entries):
        for name, problems in _entry_errors(entry, arm_ids=set(arms), axes=axes).items():
            errors[f"scores.{index}.{name}"] = problems
        key = (entry.arm_id, entry.axis, entry.source)
        if key in seen:
            errors[f"scores.{index}"] = [
                f"Score {index + 1} repeats score {seen[key] + 1} (same arm, axis and source)."
            ]
        seen.setdefault(key, index)
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    stored = []
    for entry in entries:
        score, _ = ExperimentScore.objects.update_or_create(
            arm=arms[entry.arm_id],
            axis=entry.axis,
            source=entry.source,
            defaults={
                "value": entry.value,
                "low": entry.low,
                "high": entry.high,
                "n": entry.n,
                "method": entry.method,
                "details": entry.details,
                "campaign": None,
                "batch": None,
                "recorded_by": recorded_by,
                "recorded_at": now,
            },
        )
        stored.append(score)
    return stored
