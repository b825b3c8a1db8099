"""Dataset rules: storing them (`dataset_rule_create`, `dataset_rule_update`) and the checks of a
rule's settings against its source campaigns' question schemas.

``rule_spec_check`` turns validated input (campaign and weak-source instances, plain values) into
a ``RuleSpec`` or raises one ValidationError naming every problem by field:
``conditions.0.min_mean``, ``campaigns``, ``training_trigger.role`` ...
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Campaign, CampaignKind
from annotation.quality import aggregation
from annotation.quality.selectors import is_pick_question, methods_for_question, pick_question_keys
from generation.models import ModelVersion
from training_bridge.captions import template_errors
from training_bridge.curation import RuleSpec, is_pick_condition
from training_bridge.models import (
    PURPOSE_KINDS,
    CaptionSource,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    WeakSource,
)

# spec.py imports neither torch nor diffusers, so the web process can check triggers with it.
from training_bridge.recipes.spec import RECIPES, ROLE_PURPOSES

SOURCE_CAMPAIGN_KINDS = (CampaignKind.SINGLE, CampaignKind.BEST_OF_N)
CONDITION_KEYS = ("question", "labels", "min_confidence", "min_mean", "max_mean")
CONDITION_TYPES = ("binary", "single_choice", "likert")
# A condition with min_agreement is a pick condition (``curation.is_pick_condition``): it keeps
# the candidate an item's judgments picked, on a pick question (best of N) or a pair question.
PICK_CONDITION_KEYS = ("question", "min_agreement", "min_judgments")
MAX_PICK_JUDGMENTS = 100
LIKERT_RANGE = (1, 5)
TRIGGER_KEYS = ("recipe", "base_model_version_id", "params", "role")
# Passed through to the training service, which checks them: the other datasets of a two-role
# recipe ({"<role>": version id}), whether to evaluate the result, the job's name.
TRIGGER_OPTIONAL_KEYS = ("datasets", "evaluate", "name")
MAX_CONDITIONS = 10
# Purposes that need human judgments, and therefore at least one condition.
JUDGED_PURPOSES = (
    DatasetPurpose.ALIGNMENT,
    DatasetPurpose.STYLE,
    DatasetPurpose.MOTION,
    DatasetPurpose.TEACHER_SELECTION,
)


def _a(word: str) -> str:
    return f"{'An' if word[:1] in 'aeiou' else 'A'} {word}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _question(campaign: Campaign, key: str) -> dict | None:
    return next((q for q in campaign.question_schema or [] if q.get("key") == key), None)


def _condition_errors(
    index: int, condition: Any, *, campaigns: list[Campaign], method: str
) -> dict[str, list[str]]:
    where = f"conditions.{index}"
    if not isinstance(condition, dict):
        return {where: ["Must be an object with a 'question' and thresholds."]}
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(condition) - set(CONDITION_KEYS))
    if unknown:
        errors[where] = [f"Unknown field(s) {', '.join(unknown)}; use {', '.join(CONDITION_KEYS)}."]
    key = condition.get("question")
    if not isinstance(key, str) or not key:
        errors[f"{where}.question"] = ["Name a question key."]
        return errors
    if all(condition.get(k) is None for k in CONDITION_KEYS[1:]):
        errors[where] = [
            "Give at least one of labels, min_confidence, min_mean or max_mean (or "
            "min_agreement, to keep the candidates a pick question picked)."
        ]
    for campaign in campaigns:
        question = _question(campaign, key)
        if question is None:
            errors.setdefault(f"{where}.question", []).append(_not_in(key, campaign))
            continue
        qtype = question.get("type")
        if qtype == "pick":
            errors.setdefault(f"{where}.question", []).append(
                f"Question {key!r} of campaign {campaign.name!r} is a pick question; give "
                "min_agreement to keep the candidates it picked."
            )
            continue
        if qtype not in CONDITION_TYPES:
            errors.setdefault(f"{where}.question", []).append(
                f"Question {key!r} of campaign {campaign.name!r} is a {qtype} question; "
                f"conditions take {', '.join(CONDITION_TYPES)} questions."
            )
            continue
        if method not in methods_for_question(question):
            fitting = ", ".join(methods_for_question(question))
            errors.setdefault("consensus_method", []).append(
                f"Method {method!r} does not fit question {key!r} ({qtype}); methods that fit: "
                f"{fitting}."
            )
        allowed = [o["value"] for o in question.get("options") or []]
        labels = condition.get("labels")
        if labels is not None:
            if not isinstance(labels, list) or not labels:
                errors[f"{where}.labels"] = ["Must be a non-empty list of answers."]
            else:
                for label in labels:
                    if not any(label == a and type(label) is type(a) for a in allowed):
                        errors.setdefault(f"{where}.labels", []).append(
                            f"{_show(label)} is not an answer of question {key!r} (answers: "
                            f"{', '.join(_show(a) for a in allowed)})."
                        )
                        break
        confidence = condition.get("min_confidence")
        if confidence is not None and (not _is_number(confidence) or not 0 <= confidence <= 1):
            errors[f"{where}.min_confidence"] = [
                f"Must be a number between 0 and 1, not {_show(confidence)}."
            ]
        for bound in ("min_mean", "max_mean"):
            value = condition.get(bound)
            if value is None:
                continue
            if qtype != "likert":
                errors[f"{where}.{bound}"] = [
                    f"Question {key!r} is a {qtype} question; {bound} needs a likert question."
                ]
            elif not _is_number(value) or not LIKERT_RANGE[0] <= value <= LIKERT_RANGE[1]:
                errors[f"{where}.{bound}"] = [
                    f"Must be within question {key!r}'s range {LIKERT_RANGE[0]}–"
                    f"{LIKERT_RANGE[1]}, not {_show(value)}."
                ]
        low, high = condition.get("min_mean"), condition.get("max_mean")
        if _is_number(low) and _is_number(high) and low > high:
            errors[f"{where}.max_mean"] = [f"Must be at least min_mean ({low}), not {high}."]
    return errors


def _not_in(key: str, campaign: Campaign) -> str:
    keys = ", ".join(q.get("key", "?") for q in campaign.question_schema or []) or "none"
    return f"Question {key!r} is not in campaign {campaign.name!r} (questions: {keys})."


def _pick_condition_errors(
    index: int, condition: dict, *, campaigns: list[Campaign]
) -> dict[str, list[str]]:
    """The problems of a pick condition (one with min_agreement): its question must pick
    candidates in every source campaign."""
    where = f"conditions.{index}"
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(condition) - set(PICK_CONDITION_KEYS))
    if unknown:
        errors[where] = [
            f"A pick condition (one with min_agreement) takes {', '.join(PICK_CONDITION_KEYS)}; "
            f"not {', '.join(unknown)}."
        ]
    agreement = condition.get("min_agreement")
    if agreement is None:
        errors[f"{where}.min_agreement"] = [
            "Give the share of the item's judgments that must pick the candidate, 0 to 1."
        ]
    elif not _is_number(agreement) or not 0 <= agreement <= 1:
        errors[f"{where}.min_agreement"] = [
            f"Must be a number between 0 and 1, not {_show(agreement)}."
        ]
    least = condition.get("min_judgments", 1)
    if (
        isinstance(least, bool)
        or not isinstance(least, int)
        or not 1 <= least <= MAX_PICK_JUDGMENTS
    ):
        errors[f"{where}.min_judgments"] = [
            f"Must be between 1 and {MAX_PICK_JUDGMENTS}, not {_show(least)}."
        ]
    key = condition.get("question")
    if not isinstance(key, str) or not key:
        errors[f"{where}.question"] = ["Name a pick question or a pair question."]
        return errors
    for campaign in campaigns:
        question = _question(campaign, key)
        if question is None:
            errors.setdefault(f"{where}.question", []).append(_not_in(key, campaign))
        elif not is_pick_question(campaign, question):
            fitting = pick_question_keys(campaign)
            has = f"it has {', '.join(fitting)}" if fitting else "it has none"
            errors.setdefault(f"{where}.question", []).append(
                f"Question {key!r} of campaign {campaign.name!r} is a {question.get('type')} "
                "question; a pick condition needs a pick question (best of N) or a pair question "
                f"answered left or right ({has})."
            )
    return errors


def _name_errors(name: Any, known, *, what: str, missing: str) -> list[str]:
    """Why ``name`` does not name one of ``known`` (``missing`` when it names nothing); empty
    when it does."""
    if not isinstance(name, str) or not name:
        return [missing]
    if name not in known:
        return [f"Unknown {what} {name!r}; use one of {', '.join(known)}."]
    return []


def _trigger_errors(trigger: Any, *, purpose: str, kind: str) -> dict[str, list[str]]:
    if trigger is None:
        return {}
    if not isinstance(trigger, dict):
        return {
            "training_trigger": [
                "Must be an object with recipe, base_model_version_id, params and role."
            ]
        }
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(trigger) - set(TRIGGER_KEYS) - set(TRIGGER_OPTIONAL_KEYS))
    if unknown:
        errors["training_trigger"] = [f"Unknown field(s) {', '.join(unknown)}."]
    if purpose == DatasetPurpose.EVALUATION:
        errors["training_trigger"] = ["Held-out evaluation sets never train anything."]
    recipe_errors = _name_errors(
        trigger.get("recipe"), RECIPES, what="recipe", missing="Name a recipe."
    )
    if recipe_errors:
        errors["training_trigger.recipe"] = recipe_errors
    model_id = trigger.get("base_model_version_id")
    if isinstance(model_id, bool) or not isinstance(model_id, int):
        errors["training_trigger.base_model_version_id"] = ["Must be a model version id."]
    else:
        model = ModelVersion.objects.filter(pk=model_id).first()
        if model is None:
            errors["training_trigger.base_model_version_id"] = [f"No model version {model_id}."]
        elif model.kind != kind:
            errors["training_trigger.base_model_version_id"] = [
                f"Model version {model.name!r} is an {model.kind} model; this rule makes {kind} "
                "datasets."
            ]
    if not isinstance(trigger.get("params", {}), dict):
        errors["training_trigger.params"] = ["Must be an object."]
    role = trigger.get("role")
    role_errors = _name_errors(
        role, ROLE_PURPOSES, what="role", missing="Name the role this dataset plays in the recipe."
    )
    if role_errors:
        errors["training_trigger.role"] = role_errors
    elif purpose not in ROLE_PURPOSES[role]:
        errors["training_trigger.role"] = [
            f"Role {role!r} does not take {purpose} datasets (it takes "
            f"{', '.join(ROLE_PURPOSES[role])})."
        ]
    return errors


RULE_FIELDS = (
    "name",
    "purpose",
    "kind",
    "description",
    "consensus_method",
    "conditions",
    "min_judgments",
    "exclude_gold",
    "exclude_paused_only",
    "min_motion_score",
    "weak_label_filters",
    "motion_buckets",
    "exclude_held_out",
    "per_prompt_cap",
    "dedup_max_distance",
    "validation_fraction",
    "split_seed",
    "caption_source",
    "caption_template",
    "training_trigger",
)

# The settings a checked spec holds just as the rule stores them (name and description are not
# part of a spec; conditions and motion buckets it holds as tuples; the trigger is checked apart).
_SPEC_AS_STORED = tuple(
    name
    for name in RULE_FIELDS
    if name not in ("name", "description", "conditions", "motion_buckets", "training_trigger")
)


def rule_values(rule: DatasetRule) -> dict:
    """A saved rule's settings in the shape ``rule_spec_check`` takes."""
    values = {name: getattr(rule, name) for name in RULE_FIELDS}
    values["campaigns"] = list(rule.campaigns.all())
    values["weak_sources"] = list(rule.weak_sources.all())
    return values


def rule_spec_check(*, values: dict) -> RuleSpec:
    """Check rule input and return its spec. ``values`` holds ``purpose``, ``kind`` (optional
    when the purpose allows one kind), ``campaigns`` and ``weak_sources`` as instances, and the
    rule's other settings as plain values. Raises ValidationError naming every problem."""
    errors: dict[str, list[str]] = {}
    purpose = values.get("purpose")
    if purpose not in DatasetPurpose.values:
        raise ValidationError(
            {
                "purpose": [
                    f"Unknown purpose {purpose!r}; use one of {', '.join(DatasetPurpose.values)}."
                ]
            }
        )
    kinds = PURPOSE_KINDS[purpose]
    kind = values.get("kind") or (kinds[0] if len(kinds) == 1 else None)
    if kind is None:
        errors["kind"] = [f"{_a(purpose)} rule needs a kind: image or animation."]
    elif kind not in kinds:
        errors["kind"] = [f"{_a(purpose)} rule takes {' or '.join(kinds)} datasets, not {kind}."]
    campaigns: list[Campaign] = list(values.get("campaigns") or [])
    weak_sources: list[WeakSource] = list(values.get("weak_sources") or [])
    conditions = values.get("conditions") or []
    method = values.get("consensus_method") or aggregation.MAJORITY
    if method not in aggregation.ALL_METHODS:
        errors["consensus_method"] = [
            f"Unknown consensus method {method!r}; use one of {', '.join(aggregation.ALL_METHODS)}."
        ]
    if purpose == DatasetPurpose.WEAK:
        if not weak_sources:
            errors["weak_sources"] = ["A weak rule needs at least one weak source."]
        if campaigns:
            errors["campaigns"] = ["A weak rule selects from weak sources, not campaigns."]
        if conditions:
            errors["conditions"] = ["A weak rule filters by weak labels, not by judgments."]
        wrong = [s.name for s in weak_sources if kind and s.kind != kind]
        if wrong:
            errors["weak_sources"] = [
                f"Weak source(s) {', '.join(wrong)} do not hold {kind} candidates."
            ]
    else:
        if weak_sources:
            errors["weak_sources"] = ["Only weak rules select from weak sources."]
        if not campaigns:
            errors["campaigns"] = ["Choose at least one source campaign."]
        # A pair item shows two candidates for one judgment: only a pick says which to keep.
        picks_only = (
            isinstance(conditions, list)
            and bool(conditions)
            and all(is_pick_condition(c) for c in conditions)
        )
        kinds = (*SOURCE_CAMPAIGN_KINDS, CampaignKind.PAIR) if picks_only else SOURCE_CAMPAIGN_KINDS
        bad = [c for c in campaigns if c.kind not in kinds]
        if bad:
            errors["campaigns"] = [
                f"Campaign {bad[0].name!r} is a {bad[0].kind} campaign; datasets take "
                "single-candidate or best-of-N campaigns, and pair campaigns through pick "
                "conditions (min_agreement) only."
            ]
        if not isinstance(conditions, list):
            errors["conditions"] = ["Must be a list of conditions."]
            conditions = []
        elif purpose in JUDGED_PURPOSES and not conditions:
            errors["conditions"] = [f"{_a(purpose)} rule needs at least one condition."]
        elif len(conditions) > MAX_CONDITIONS:
            errors["conditions"] = [f"At most {MAX_CONDITIONS} conditions, not {len(conditions)}."]
        elif "campaigns" not in errors and "consensus_method" not in errors:
            for index, condition in enumerate(conditions):
                found = (
                    _pick_condition_errors(index, condition, campaigns=campaigns)
                    if is_pick_condition(condition)
                    else _condition_errors(index, condition, campaigns=campaigns, method=method)
                )
                for name, messages in found.items():
                    errors.setdefault(name, [])
                    errors[name] += [m for m in messages if m not in errors[name]]
    filters = values.get("weak_label_filters") or {}
    if not isinstance(filters, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str | int | float | bool) for x in v)
        for v in filters.values()
    ):
        errors["weak_label_filters"] = ["Must map label names to non-empty lists of values."]
    elif filters and purpose != DatasetPurpose.WEAK:
        errors["weak_label_filters"] = ["Only weak rules filter by weak labels."]
    buckets = values.get("motion_buckets") or []
    if not isinstance(buckets, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in buckets
    ):
        errors["motion_buckets"] = ["Must be a list of bucket numbers (0, 1, 2 ...)."]
    elif buckets:
        if purpose != DatasetPurpose.WEAK or kind != DatasetKind.ANIMATION:
            errors["motion_buckets"] = ["Only weak animation rules select by motion bucket."]
        else:
            top = max((len(s.motion_bucket_edges or []) for s in weak_sources), default=0)
            over = [b for b in buckets if b > top]
            if over:
                errors["motion_buckets"] = [
                    f"Bucket {over[0]} does not exist: the sources have buckets 0 to {top}."
                ]
    floor = values.get("min_motion_score")
    if floor is not None:
        if kind != DatasetKind.ANIMATION:
            errors["min_motion_score"] = ["Only animation datasets have motion scores."]
        elif not _is_number(floor) or not 0 <= floor <= 1:
            errors["min_motion_score"] = [f"Must be between 0 and 1, not {_show(floor)}."]
    fraction = values.get("validation_fraction", 0.1)
    if not _is_number(fraction) or not 0 <= fraction <= 0.5:
        errors["validation_fraction"] = [f"Must be between 0 and 0.5, not {_show(fraction)}."]
    distance = values.get("dedup_max_distance")
    if distance is not None and (
        isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 16
    ):
        errors["dedup_max_distance"] = [f"Must be between 0 and 16 bits, not {_show(distance)}."]
    cap = values.get("per_prompt_cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        errors["per_prompt_cap"] = [f"Must be at least 1, not {_show(cap)}."]
    min_judgments = values.get("min_judgments", 1)
    if (
        isinstance(min_judgments, bool)
        or not isinstance(min_judgments, int)
        or not (0 <= min_judgments <= 100)
    ):
        errors["min_judgments"] = [f"Must be between 0 and 100, not {_show(min_judgments)}."]
    caption_source = values.get("caption_source") or CaptionSource.RAW_PROMPT
    template = values.get("caption_template") or ""
    if caption_source not in CaptionSource.values:
        errors["caption_source"] = [
            f"Unknown caption source {caption_source!r}; use {', '.join(CaptionSource.values)}."
        ]
    elif caption_source == CaptionSource.TEMPLATE:
        if not template.strip():
            errors["caption_template"] = ["A template caption needs a template."]
        elif problems := template_errors(template):
            errors["caption_template"] = problems
    elif template:
        errors["caption_template"] = ["A template is used only with caption_source=template."]
    if kind:
        errors.update(_trigger_errors(values.get("training_trigger"), purpose=purpose, kind=kind))
    if errors:
        raise ValidationError(errors)
    return RuleSpec(
        purpose=purpose,
        kind=kind,
        campaign_ids=tuple(sorted(c.pk for c in campaigns)),
        weak_source_names=tuple(sorted(s.name for s in weak_sources)),
        consensus_method=method,
        conditions=tuple(_stored_condition(c) for c in conditions),
        min_judgments=min_judgments,
        exclude_gold=values.get("exclude_gold", True),
        exclude_paused_only=values.get("exclude_paused_only", True),
        min_motion_score=floor,
        weak_label_filters=dict(filters),
        motion_buckets=tuple(sorted(set(buckets))),
        exclude_held_out=values.get("exclude_held_out", True),
        per_prompt_cap=cap,
        dedup_max_distance=distance,
        validation_fraction=float(fraction),
        split_seed=values.get("split_seed", 0),
        caption_source=caption_source,
        caption_template=template,
    )


def _stored_condition(condition: dict) -> dict:
    """A checked condition as the rule keeps it: a pick condition with its minimum number of
    judgments spelled out."""
    if is_pick_condition(condition):
        return {
            "question": condition["question"],
            "min_agreement": condition["min_agreement"],
            "min_judgments": condition.get("min_judgments", 1),
        }
    return condition


@transaction.atomic
def dataset_rule_create(*, values: dict, created_by: AbstractBaseUser | None = None) -> DatasetRule:
    """Check and store a rule. ``values``: see ``rules.rule_spec_check`` plus ``name`` and
    ``description``."""
    name, spec = _rule_check(values, others=DatasetRule.objects.all())
    return _rule_save(DatasetRule(created_by=created_by), name=name, spec=spec, values=values)


def _rule_check(values: dict, *, others) -> tuple[str, RuleSpec]:
    """The rule's name, stripped, and its checked spec. Raises ValidationError naming every
    problem, a name one of ``others`` holds among them."""
    name = (values.get("name") or "").strip()
    errors = {}
    if not name:
        errors["name"] = ["Give the rule a name."]
    elif others.filter(name=name).exists():
        errors["name"] = [f"A rule named {name!r} exists already."]
    try:
        spec = rule_spec_check(values=values)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return name, spec


def _rule_save(rule: DatasetRule, *, name: str, spec: RuleSpec, values: dict) -> DatasetRule:
    """Store checked settings on ``rule`` (new or locked) with its campaigns and weak sources."""
    rule.name = name
    rule.description = values.get("description", "")
    _apply_spec(rule, spec, training_trigger=values.get("training_trigger"))
    rule.full_clean()
    rule.save()
    rule.campaigns.set(values.get("campaigns") or [])
    rule.weak_sources.set(values.get("weak_sources") or [])
    return rule


def _apply_spec(rule: DatasetRule, spec: RuleSpec, *, training_trigger) -> None:
    for name in _SPEC_AS_STORED:
        setattr(rule, name, getattr(spec, name))
    rule.conditions = list(spec.conditions)
    rule.motion_buckets = list(spec.motion_buckets)
    if training_trigger is not None:
        training_trigger = {"params": {}, **training_trigger}
    rule.training_trigger = training_trigger


@transaction.atomic
def dataset_rule_update(*, rule: DatasetRule, changes: dict) -> DatasetRule:
    """Change a rule's settings; versions already built keep the settings they were built with."""
    rule = DatasetRule.objects.select_for_update().get(pk=rule.pk)
    values = {**rule_values(rule), **changes}
    name, spec = _rule_check(values, others=DatasetRule.objects.exclude(pk=rule.pk))
    return _rule_save(rule, name=name, spec=spec, values=values)
