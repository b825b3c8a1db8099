"""Declaring a pipeline: its stages checked against each other and stored at once, or refused
with every problem keyed by its field (``stages.3.inputs.style``) and nothing stored."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from generation.models import ModelKind, ModelVersion, PromptSet
from training_bridge.experiments.services.experiments import MIN_IMAGE_SEEDS
from training_bridge.jobs.evaluation import DEFAULT_EVALUATION_SEEDS, MAX_EVALUATION_SEEDS
from training_bridge.jobs.models import DatasetRole, Recipe
from training_bridge.models import DatasetRule, DatasetVersion, VersionStatus
from training_bridge.pipelines import tasks as pipeline_tasks
from training_bridge.pipelines.models import Pipeline, PipelineStage, StageKind
from training_bridge.recipes.spec import RECIPE_MODEL_KINDS, RECIPE_ROLES, ROLE_PURPOSES

MAX_STAGES = 20
MAX_SEED = 2**32 - 1
MAX_ARMS = 7  # an experiment takes 8 arms, one of them the base
STAGE_FIELDS = {
    StageKind.DATASET: {"name", "kind", "rule", "role", "dataset_version"},
    StageKind.TRAINING: {
        "name",
        "kind",
        "recipe",
        "base_model_version",
        "base_stage",
        "params",
        "evaluate",
        "inputs",
    },
    StageKind.EVALUATION: {
        "name",
        "kind",
        "arms",
        "base_model_version",
        "base_stage",
        "prompt_set",
        "seeds",
    },
}


@dataclass
class _Declared:
    """A stage as checked: the row to store, and what later stages read from it."""

    stage: PipelineStage
    model_kind: str | None = None  # training stages: the kind of model they make


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _add(errors: dict[str, list[str]], key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def _dataset(prefix: str, raw: dict, stage: PipelineStage, errors: dict) -> None:
    rule_id, role = raw.get("rule"), raw.get("role")
    rule = DatasetRule.objects.filter(pk=rule_id).first() if _is_id(rule_id) else None
    if rule is None:
        _add(errors, f"{prefix}.rule", f"No dataset rule with id {rule_id!r}.")
    if role not in DatasetRole.values:
        _add(
            errors,
            f"{prefix}.role",
            f"Unknown role {role!r}; use one of {', '.join(DatasetRole.values)}.",
        )
    elif rule is not None and rule.purpose not in ROLE_PURPOSES[role]:
        _add(
            errors,
            f"{prefix}.role",
            f"Rule {rule.name!r} makes {rule.purpose} datasets, which the role {role} does not "
            f"take (it takes {', '.join(ROLE_PURPOSES[role])}).",
        )
    stage.rule, stage.role = rule, role if isinstance(role, str) else ""
    if "dataset_version" not in raw:
        return
    version_id = raw["dataset_version"]
    version = DatasetVersion.objects.filter(pk=version_id).first() if _is_id(version_id) else None
    key = f"{prefix}.dataset_version"
    if version is None:
        _add(errors, key, f"No dataset version with id {version_id!r}.")
    elif rule is not None and version.rule_id != rule.pk:
        _add(errors, key, f"Dataset version {version.pk} is not a version of rule {rule.name!r}.")
    elif version.status != VersionStatus.PUBLISHED:
        _add(
            errors,
            key,
            f"Dataset version {version.pk} is {version.status}; give a published version, or "
            "none to wait for the rule's next publish.",
        )
    stage.dataset_version = version


def _base(
    prefix: str, raw: dict, stage: PipelineStage, earlier: dict[str, _Declared], errors: dict
) -> str | None:
    """Resolve ``base_model_version`` or ``base_stage``; the base model's kind, when known."""
    has_version, has_stage = "base_model_version" in raw, "base_stage" in raw
    if has_version == has_stage:
        _add(
            errors,
            f"{prefix}.base_model_version",
            "Give exactly one of base_model_version (a model version id) and base_stage (the "
            "name of an earlier training stage).",
        )
        return None
    if has_version:
        version_id = raw["base_model_version"]
        version = ModelVersion.objects.filter(pk=version_id).first() if _is_id(version_id) else None
        if version is None:
            _add(
                errors, f"{prefix}.base_model_version", f"No model version with id {version_id!r}."
            )
            return None
        if not version.is_active:
            _add(
                errors, f"{prefix}.base_model_version", f"Model version {version.name} is retired."
            )
        stage.base_model_version = version
        return version.kind
    name = raw["base_stage"]
    base = earlier.get(name) if isinstance(name, str) else None
    if base is None or base.stage.kind != StageKind.TRAINING:
        _add(errors, f"{prefix}.base_stage", f"No earlier training stage named {name!r}.")
        return None
    stage.base_stage = base.stage
    return base.model_kind


def _training(
    prefix: str, raw: dict, declared: _Declared, earlier: dict[str, _Declared], errors: dict
) -> None:
    stage = declared.stage
    recipe = raw.get("recipe")
    if recipe not in Recipe.values:
        _add(
            errors,
            f"{prefix}.recipe",
            f"Unknown recipe {recipe!r}; use one of {', '.join(Recipe.values)}.",
        )
        recipe = None
    stage.recipe = recipe or ""
    kind = _base(prefix, raw, stage, earlier, errors)
    if recipe and kind and kind not in RECIPE_MODEL_KINDS[recipe]:
        _add(
            errors,
            f"{prefix}.base_model_version" if stage.base_model_version else f"{prefix}.base_stage",
            f"The {recipe} recipe trains {' or '.join(RECIPE_MODEL_KINDS[recipe])} models, not "
            f"{kind} models.",
        )
    declared.model_kind = kind
    params = raw.get("params", {})
    if not isinstance(params, dict):
        _add(errors, f"{prefix}.params", "Must be a JSON object of hyper-parameters.")
    stage.params = params if isinstance(params, dict) else {}
    evaluate = raw.get("evaluate", False)
    if not isinstance(evaluate, bool):
        _add(errors, f"{prefix}.evaluate", "Must be true or false.")
    stage.evaluate = evaluate is True
    named = _named_inputs(prefix, raw, recipe, earlier, errors)
    stage.inputs = {role: source.stage.name for role, source in named.items()}
    if not recipe:
        return
    for role in RECIPE_ROLES[recipe]:
        if f"{prefix}.inputs.{role}" in errors:
            continue  # the stage named for it was refused already
        source = named.get(role) or _input_stage(earlier, role)
        if source is None:
            _add(
                errors,
                f"{prefix}.inputs.{role}",
                f"The {recipe} recipe trains on a dataset in role {role!r}; no earlier dataset "
                "stage fills that role.",
            )
        elif kind and source.stage.rule is not None and source.stage.rule.kind != kind:
            _add(
                errors,
                f"{prefix}.inputs.{role}",
                f"Stage {source.stage.name!r} makes {source.stage.rule.kind} datasets but the base "
                f"model is an {kind} model.",
            )


def _named_inputs(
    prefix: str, raw: dict, recipe: str | None, earlier: dict[str, _Declared], errors: dict
) -> dict[str, _Declared]:
    """``inputs``: each role the recipe takes → the earlier dataset stage named for it, whose
    rule's purpose the role takes."""
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        _add(
            errors,
            f"{prefix}.inputs",
            "Must be a JSON object of role → the name of an earlier dataset stage.",
        )
        return {}
    named: dict[str, _Declared] = {}
    for role, name in inputs.items():
        key = f"{prefix}.inputs.{role}"
        if recipe and role not in RECIPE_ROLES[recipe]:
            _add(
                errors,
                key,
                f"The {recipe} recipe takes no role {role!r}; it takes "
                f"{', '.join(RECIPE_ROLES[recipe])}.",
            )
            continue
        source = earlier.get(name) if isinstance(name, str) else None
        if source is None or source.stage.kind != StageKind.DATASET:
            _add(errors, key, f"No earlier dataset stage named {name!r}.")
            continue
        rule = source.stage.rule
        if rule is not None and rule.purpose not in ROLE_PURPOSES[role]:
            _add(
                errors,
                key,
                f"Stage {name!r} makes {rule.purpose} datasets, which the role {role} does not "
                f"take (it takes {', '.join(ROLE_PURPOSES[role])}).",
            )
            continue
        named[role] = source
    return named


def _input_stage(earlier: dict[str, _Declared], role: str) -> _Declared | None:
    """The nearest earlier dataset stage that fills ``role`` (dicts keep declaration order)."""
    found = None
    for declared in earlier.values():
        if declared.stage.kind == StageKind.DATASET and declared.stage.role == role:
            found = declared
    return found


def _evaluation(
    prefix: str, raw: dict, declared: _Declared, earlier: dict[str, _Declared], errors: dict
) -> None:
    stage = declared.stage
    base_kind = _base(prefix, raw, stage, earlier, errors)
    arms = raw.get("arms")
    kinds = set() if base_kind is None else {base_kind}
    if not isinstance(arms, list) or not 1 <= len(arms) <= MAX_ARMS:
        _add(
            errors,
            f"{prefix}.arms",
            f"Give 1 to {MAX_ARMS} names of earlier training stages whose models are compared "
            "with the base.",
        )
        arms = []
    for name in arms:
        arm = earlier.get(name) if isinstance(name, str) else None
        if arm is None or arm.stage.kind != StageKind.TRAINING:
            _add(errors, f"{prefix}.arms", f"No earlier training stage named {name!r}.")
        elif arm.model_kind:
            kinds.add(arm.model_kind)
    if len(set(arms)) != len(arms):
        _add(errors, f"{prefix}.arms", "Each training stage may be an arm once.")
    if len(kinds) > 1:
        _add(
            errors,
            f"{prefix}.arms",
            "The arms and the base must be models of one kind (image or animation).",
        )
    stage.arms = [a for a in arms if isinstance(a, str)]
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    prompt_set_id = raw.get("prompt_set")
    if prompt_set_id is not None:
        prompt_set = (
            PromptSet.objects.filter(pk=prompt_set_id).first() if _is_id(prompt_set_id) else None
        )
        if prompt_set is None:
            _add(errors, f"{prefix}.prompt_set", f"No prompt set with id {prompt_set_id!r}.")
        elif kind == ModelKind.ANIMATION:
            _add(
                errors,
                f"{prefix}.prompt_set",
                "Animation models are evaluated on source stickers, not prompts.",
            )
        elif not prompt_set.is_held_out:
            _add(
                errors,
                f"{prefix}.prompt_set",
                f"Prompt set {prompt_set.name!r} is not held out; experiments evaluate on "
                "held-out prompts only.",
            )
        stage.prompt_set = prompt_set
    seeds = raw.get("seeds", DEFAULT_EVALUATION_SEEDS)
    least = MIN_IMAGE_SEEDS if kind == ModelKind.IMAGE else 1
    if (
        not isinstance(seeds, list)
        or not least <= len(seeds) <= MAX_EVALUATION_SEEDS
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds
        )
        or len(set(seeds)) != len(seeds)
    ):
        _add(
            errors,
            f"{prefix}.seeds",
            f"Give {least} to {MAX_EVALUATION_SEEDS} distinct integer seeds from 0 to 2**32 - 1.",
        )
    stage.seeds = list(seeds) if isinstance(seeds, list) else []


def _declare_stage(
    index: int, raw, earlier: dict[str, _Declared], errors: dict
) -> _Declared | None:
    prefix = f"stages.{index}"
    if not isinstance(raw, dict):
        _add(errors, prefix, "A stage is an object with a name and a kind.")
        return None
    kind = raw.get("kind")
    if kind not in StageKind.values:
        _add(
            errors,
            f"{prefix}.kind",
            f"Unknown stage kind {kind!r}; use one of {', '.join(StageKind.values)}.",
        )
        return None
    unknown = sorted(set(raw) - STAGE_FIELDS[kind])
    if unknown:
        _add(
            errors, prefix, f"Unknown field(s) for a {kind} stage: {', '.join(map(str, unknown))}."
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name or slugify(name) != name or len(name) > 100:
        _add(
            errors,
            f"{prefix}.name",
            "A stage needs a name of at most 100 lowercase letters, digits, hyphens or "
            "underscores.",
        )
        name = None
    elif name in earlier:
        _add(
            errors,
            f"{prefix}.name",
            f"Stage {earlier[name].stage.position} is named {name!r} already.",
        )
    declared = _Declared(stage=PipelineStage(position=index, name=name or "", kind=kind))
    if kind == StageKind.DATASET:
        _dataset(prefix, raw, declared.stage, errors)
    elif kind == StageKind.TRAINING:
        _training(prefix, raw, declared, earlier, errors)
    else:
        _evaluation(prefix, raw, declared, earlier, errors)
    if name and name not in earlier:
        earlier[name] = declared
    return declared


@transaction.atomic
def pipeline_create(
    *,
    name: str,
    stages: list,
    description: str = "",
    created_by: AbstractBaseUser | None = None,
) -> Pipeline:
    """Check and store a pipeline, and start it (its first stage starts in the worker,
    ``pipeline_advance``).

    ``stages``, in the order they run, each ``{"name", "kind", ...}``:

    - ``dataset``: ``rule`` (id), ``role`` (the training role it fills), optionally
      ``dataset_version`` (a published version of the rule; without it the stage waits for
      the rule's next publish);
    - ``training``: ``recipe``, ``base_model_version`` (id) or ``base_stage`` (an earlier
      training stage's name), ``params``, ``evaluate``, ``inputs`` (role → an earlier dataset
      stage's name); each of the recipe's roles not in ``inputs`` is taken from the nearest
      earlier dataset stage of that role;
    - ``evaluation``: ``arms`` (earlier training stages' names), ``base_model_version`` or
      ``base_stage`` (the base arm), ``prompt_set`` (held out; default the newest), ``seeds``.

    Raises:
        ValidationError: keyed by the field (``name``, ``stages``, ``stages.<i>.<field>``,
            ``stages.<i>.inputs.<role>``); nothing is stored.
    """
    errors: dict[str, list[str]] = {}
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        _add(errors, "name", "A pipeline needs a name.")
    elif len(name) > 200:
        _add(errors, "name", "A name has at most 200 characters.")
    elif Pipeline.objects.filter(name=name).exists():
        _add(errors, "name", f"A pipeline named {name!r} exists already.")
    declared: list[_Declared] = []
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        _add(errors, "stages", f"Give 1 to {MAX_STAGES} stages, in the order they run.")
    else:
        earlier: dict[str, _Declared] = {}
        for index, raw in enumerate(stages):
            stage = _declare_stage(index, raw, earlier, errors)
            if stage is not None:
                declared.append(stage)
    if errors:
        raise ValidationError(errors)
    pipeline = Pipeline(name=name, description=description, created_by=created_by)
    pipeline.full_clean()
    pipeline.save()
    for item in declared:
        # base_stage points at a row saved before it: stages are saved in order.
        item.stage.pipeline = pipeline
        item.stage.save()
    pipeline_tasks.advance.delay_on_commit(pipeline.pk)
    return pipeline
