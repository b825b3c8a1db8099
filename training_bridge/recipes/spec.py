"""What a training run is asked to do, and the up-front checks of it (no torch, no Django).

A run is described by a ``TrainingSpec``: the recipe, the base model folder, the dataset exports
with their roles, the output folder and the parameters. The same spec travels as JSON (``--spec
job.json``), so the platform can render it for a cluster. Every check raises ``SpecError``, a
``ValueError`` that also names the offending field, so the platform can answer a 400 keyed by
that field with the recipe's own message.

This module imports neither torch nor diffusers: the web process validates jobs with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Files of a run's output folder, named here so the platform can find them without torch.
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"
SUMMARY_FILE = "training_summary.json"

FINETUNE = "finetune"
SEQUENTIAL = "sequential"
STYLE_TAILORING = "style_tailoring"
DISTILL_STUDENT = "distill_student"
RECIPES = (FINETUNE, SEQUENTIAL, STYLE_TAILORING, DISTILL_STUDENT)

IMAGE = "image"
ANIMATION = "animation"
KINDS = (IMAGE, ANIMATION)

# Roles each recipe takes, in training order. Sequential trains on `first`, then on `second`.
RECIPE_ROLES: dict[str, tuple[str, ...]] = {
    FINETUNE: ("train",),
    SEQUENTIAL: ("first", "second"),
    STYLE_TAILORING: ("content", "style"),
    DISTILL_STUDENT: ("teacher_selection",),
}
ROLES = ("train", "first", "second", "content", "style", "teacher_selection")

# Dataset purposes a role accepts. Held-out evaluation sets never train anything.
TRAINING_PURPOSES = ("alignment", "style", "motion", "teacher_selection", "weak")
ROLE_PURPOSES: dict[str, tuple[str, ...]] = {
    "train": TRAINING_PURPOSES,
    "first": TRAINING_PURPOSES,
    "second": TRAINING_PURPOSES,
    "content": ("alignment", "weak", "motion"),
    "style": ("style",),
    "teacher_selection": ("teacher_selection",),
}
# Model kinds a recipe trains; the datasets must be of the same kind.
RECIPE_MODEL_KINDS: dict[str, tuple[str, ...]] = {
    FINETUNE: KINDS,
    SEQUENTIAL: KINDS,
    STYLE_TAILORING: KINDS,
    DISTILL_STUDENT: (ANIMATION,),
}

# Pipeline classes per model kind, read from model_index.json without importing diffusers.
IMAGE_PIPELINE_CLASSES = ("StableDiffusionPipeline",)
ANIMATION_PIPELINE_CLASSES = ("AnimateDiffVideoToVideoPipeline",)

METHODS = ("full", "lora", "motion")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
MAX_SEED = 2**32 - 1
MAX_STEPS = 1_000_000
MAX_LEARNING_RATE = 1e-2


class SpecError(ValueError):
    """A run argument is invalid. ``field`` names it (``params.learning_rate``, ``datasets``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ModelFacts:
    """What the checks need from a base model folder, read from its JSON files only."""

    kind: str
    class_name: str
    num_train_timesteps: int
    prediction_type: str
    resolution: int
    num_frames: int | None


@dataclass(frozen=True)
class DatasetSpec:
    role: str
    path: str


@dataclass
class TrainingSpec:
    """One training run.

    Attributes:
        recipe: one of RECIPES.
        base_model: a diffusers-format folder (``model_index.json`` inside).
        datasets: the dataset exports with their roles (see RECIPE_ROLES).
        output_dir: where checkpoints (``checkpoint-<step>``) and the final model go.
        params: hyper-parameters; missing ones take PARAM defaults (see resolve_params).
        device: "cpu", "cuda" or None (accelerate decides).
        job: free-form facts about the job that asked for the run, copied into the model card.
    """

    recipe: str
    base_model: str
    datasets: list[DatasetSpec]
    output_dir: str
    params: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    job: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingSpec:
        """Build a spec from its JSON form; raises SpecError on a malformed document."""
        if not isinstance(data, dict):
            raise SpecError("spec", "The spec has to be a JSON object.")
        missing = [k for k in ("recipe", "base_model", "datasets", "output_dir") if k not in data]
        if missing:
            raise SpecError(missing[0], f"The spec is missing `{missing[0]}`.")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SpecError(unknown[0], f"The spec has unknown keys: {', '.join(unknown)}.")
        datasets = data["datasets"]
        if not isinstance(datasets, list) or not all(
            isinstance(d, dict)
            and isinstance(d.get("role"), str)
            and isinstance(d.get("path"), str)
            for d in datasets
        ):
            raise SpecError("datasets", '`datasets` has to be a list of {"role", "path"} objects.')
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise SpecError("params", "`params` has to be an object.")
        return cls(
            recipe=data["recipe"],
            base_model=str(data["base_model"]),
            datasets=[DatasetSpec(role=d["role"], path=d["path"]) for d in datasets],
            output_dir=str(data["output_dir"]),
            params=dict(params),
            device=data.get("device"),
            job=dict(data.get("job") or {}),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingSpec:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SpecError("spec", f"The spec file {path} does not exist.") from exc
        except json.JSONDecodeError as exc:
            raise SpecError("spec", f"The spec file {path} is not valid JSON: {exc.msg}.") from exc
        return cls.from_json(data)


# Parameters -------------------------------------------------------------------------------------

# name: (type, default). None defaults are filled from the model (resolution, num_frames,
# method) or the other parameters (first_stage_steps, timestep_split); see resolve_params.
PARAMS: dict[str, tuple[type, Any]] = {
    "seed": (int, 0),
    "max_train_steps": (int, 1000),
    "learning_rate": (float, 1e-4),
    "train_batch_size": (int, 4),
    "gradient_accumulation_steps": (int, 1),
    "resolution": (int, None),
    "method": (str, None),
    "lora_rank": (int, 4),
    "lora_alpha": (float, None),
    "lr_scheduler": (str, "constant"),
    "lr_warmup_steps": (int, 0),
    "adam_weight_decay": (float, 1e-2),
    "max_grad_norm": (float, 1.0),
    "mixed_precision": (str, "no"),
    "checkpointing_steps": (int, 500),
    "checkpoints_total_limit": (int, 2),
    "keep_checkpoints": (bool, False),
    "logging_steps": (int, None),
    "record_timesteps": (bool, None),
    "num_frames": (int, None),
    "inference_steps": (int, None),
    "validation_samples": (int, 4),
    # sequential
    "first_stage_steps": (int, None),
    # style_tailoring
    "timestep_split": (int, None),
    "content_ratio": (float, 0.5),
}
RECIPE_ONLY_PARAMS = {
    "first_stage_steps": SEQUENTIAL,
    "timestep_split": STYLE_TAILORING,
    "content_ratio": STYLE_TAILORING,
}
ANIMATION_ONLY_PARAMS = ("num_frames",)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(name: str, value: Any, low: int, high: int, *, high_open: bool = False) -> int:
    ok = _is_int(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise SpecError(
            f"params.{name}",
            f"`{name}` has to be an integer in [{low}, {high}{bracket} but is {value!r}.",
        )
    return int(value)


def _number_in(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    ok = _is_number(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise SpecError(
            f"params.{name}",
            f"`{name}` has to be a number in {bracket}{low:g}, {high:g}] but is {value!r}.",
        )
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(
            f"params.{name}", f"`{name}` has to be one of {', '.join(choices)} but is {value!r}."
        )
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"params.{name}", f"`{name}` has to be true or false but is {value!r}.")
    return value


def resolve_params(recipe: str, params: dict[str, Any], model: ModelFacts) -> dict[str, Any]:
    """Fill in defaults and check every parameter's type and range; return the full set.

    Ranges: ``max_train_steps`` in [1, 1000000]; ``learning_rate`` in (0, 0.01];
    ``train_batch_size`` in [1, 512]; ``gradient_accumulation_steps`` in [1, 128];
    ``resolution`` a multiple of 8 in [64, 2048] (default: the UNet's sample size x 8);
    ``method`` "full" or "lora" ("motion", the default for animation models, trains only the
    motion modules); ``timestep_split`` in [0, num_train_timesteps) (default: half of it);
    ``logging_steps`` >= 1 (default: 1 up to 1000 steps, then max_train_steps // 1000);
    ``content_ratio`` in [0, 1]; ``first_stage_steps`` in [1, max_train_steps - 1] (default:
    half); ``num_frames`` in [2, 32] (default: the model's); ``checkpointing_steps`` >= 1.

    Raises:
        SpecError: naming ``params.<name>``, e.g. "`timestep_split` has to be an integer in
            [0, 1000) but is 1000.".
    """
    if recipe not in RECIPES:
        raise SpecError(
            "recipe", f"`recipe` has to be one of {', '.join(RECIPES)} but is {recipe!r}."
        )
    if not isinstance(params, dict):
        raise SpecError("params", "`params` has to be an object.")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise SpecError(f"params.{unknown[0]}", f"Unknown parameter(s): {', '.join(unknown)}.")
    for name, only in RECIPE_ONLY_PARAMS.items():
        if name in params and recipe != only:
            raise SpecError(f"params.{name}", f"`{name}` only applies to the {only} recipe.")
    for name in ANIMATION_ONLY_PARAMS:
        if name in params and model.kind != ANIMATION:
            raise SpecError(f"params.{name}", f"`{name}` only applies to animation models.")

    p = {name: params.get(name, default) for name, (_, default) in PARAMS.items()}
    out: dict[str, Any] = {}
    out["seed"] = _int_in("seed", p["seed"], 0, MAX_SEED)
    out["max_train_steps"] = steps = _int_in("max_train_steps", p["max_train_steps"], 1, MAX_STEPS)
    out["learning_rate"] = _number_in(
        "learning_rate", p["learning_rate"], 0, MAX_LEARNING_RATE, low_open=True
    )
    out["train_batch_size"] = _int_in("train_batch_size", p["train_batch_size"], 1, 512)
    out["gradient_accumulation_steps"] = _int_in(
        "gradient_accumulation_steps", p["gradient_accumulation_steps"], 1, 128
    )
    resolution = model.resolution if p["resolution"] is None else p["resolution"]
    resolution = _int_in("resolution", resolution, 64, 2048)
    if resolution % 8:
        raise SpecError(
            "params.resolution", f"`resolution` has to be divisible by 8 but is {resolution}."
        )
    out["resolution"] = resolution

    default_method = "motion" if model.kind == ANIMATION else "full"
    method = _choice("method", default_method if p["method"] is None else p["method"], METHODS)
    if method == "motion" and model.kind != ANIMATION:
        raise SpecError("params.method", "`method` 'motion' needs an animation model.")
    out["method"] = method
    out["lora_rank"] = _int_in("lora_rank", p["lora_rank"], 1, 256)
    alpha = out["lora_rank"] if p["lora_alpha"] is None else p["lora_alpha"]
    out["lora_alpha"] = _number_in("lora_alpha", alpha, 0, 1024, low_open=True)
    out["lr_scheduler"] = _choice("lr_scheduler", p["lr_scheduler"], LR_SCHEDULERS)
    out["lr_warmup_steps"] = _int_in("lr_warmup_steps", p["lr_warmup_steps"], 0, steps)
    out["adam_weight_decay"] = _number_in("adam_weight_decay", p["adam_weight_decay"], 0, 1)
    out["max_grad_norm"] = _number_in("max_grad_norm", p["max_grad_norm"], 0, 1000, low_open=True)
    out["mixed_precision"] = _choice("mixed_precision", p["mixed_precision"], MIXED_PRECISION)
    out["checkpointing_steps"] = _int_in(
        "checkpointing_steps", p["checkpointing_steps"], 1, MAX_STEPS
    )
    out["checkpoints_total_limit"] = _int_in(
        "checkpoints_total_limit", p["checkpoints_total_limit"], 1, 100
    )
    out["keep_checkpoints"] = _bool("keep_checkpoints", p["keep_checkpoints"])
    # Default: every step up to 1000 steps, then about 1000 progress lines per run, so a long
    # run's stored loss curve stays a few thousand rows.
    logging = max(1, steps // 1000) if p["logging_steps"] is None else p["logging_steps"]
    out["logging_steps"] = _int_in("logging_steps", logging, 1, MAX_STEPS)
    record = recipe == STYLE_TAILORING if p["record_timesteps"] is None else p["record_timesteps"]
    out["record_timesteps"] = _bool("record_timesteps", record)
    if model.kind == ANIMATION:
        frames = (model.num_frames or 8) if p["num_frames"] is None else p["num_frames"]
        out["num_frames"] = _int_in("num_frames", frames, 2, 32)
    if p["inference_steps"] is not None:
        out["inference_steps"] = _int_in("inference_steps", p["inference_steps"], 1, 200)
    out["validation_samples"] = _int_in("validation_samples", p["validation_samples"], 0, 256)

    if recipe == SEQUENTIAL:
        if steps < 2:
            raise SpecError(
                "params.max_train_steps",
                f"`max_train_steps` has to be at least 2 for the sequential recipe but is {steps}.",
            )
        first = steps // 2 if p["first_stage_steps"] is None else p["first_stage_steps"]
        out["first_stage_steps"] = _int_in("first_stage_steps", first, 1, steps - 1)
    if recipe == STYLE_TAILORING:
        total = model.num_train_timesteps
        split = total // 2 if p["timestep_split"] is None else p["timestep_split"]
        out["timestep_split"] = _int_in("timestep_split", split, 0, total, high_open=True)
        out["content_ratio"] = ratio = _number_in("content_ratio", p["content_ratio"], 0, 1)
        if out["timestep_split"] == 0 and ratio < 1:
            raise SpecError(
                "params.timestep_split",
                "`timestep_split` 0 leaves no timestep below it for the style samples; "
                "raise it or set `content_ratio` to 1.",
            )
    return out


# Model and dataset facts -------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def read_model_facts(path: str | Path) -> ModelFacts:
    """Read the kind, noise schedule and sizes of the diffusers folder at ``path``.

    Only JSON files are read, so this costs milliseconds and needs no torch.

    Raises:
        SpecError: (field ``base_model``) the folder is missing, has no readable
            ``model_index.json`` or scheduler config, or holds a pipeline no recipe trains.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise SpecError("base_model", f"The base model folder {folder} does not exist.")
    try:
        index = _read_json(folder / "model_index.json")
    except (OSError, ValueError) as exc:
        raise SpecError(
            "base_model",
            f"The base model folder {folder} is not a diffusers model: model_index.json is "
            f"missing or unreadable ({exc}).",
        ) from exc
    class_name = index.get("_class_name", "")
    if class_name in IMAGE_PIPELINE_CLASSES:
        kind = IMAGE
    elif class_name in ANIMATION_PIPELINE_CLASSES:
        kind = ANIMATION
    else:
        raise SpecError(
            "base_model",
            f"The base model {folder} holds a {class_name or 'unknown pipeline'}, which no recipe "
            f"trains (expected one of: "
            f"{', '.join(IMAGE_PIPELINE_CLASSES + ANIMATION_PIPELINE_CLASSES)}).",
        )
    try:
        scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    except (OSError, ValueError) as exc:
        raise SpecError(
            "base_model", f"The base model {folder} has no readable scheduler config ({exc})."
        ) from exc
    try:
        unet = _read_json(folder / "unet" / "config.json")
    except (OSError, ValueError):
        unet = {}
    sample_size = unet.get("sample_size") or 8
    if isinstance(sample_size, list):
        sample_size = sample_size[0]
    frames = None
    if kind == ANIMATION:
        frames = 8
    return ModelFacts(
        kind=kind,
        class_name=class_name,
        num_train_timesteps=int(scheduler.get("num_train_timesteps", 1000)),
        prediction_type=str(scheduler.get("prediction_type", "epsilon")),
        resolution=int(sample_size) * 8,
        num_frames=frames,
    )


@dataclass(frozen=True)
class DatasetFacts:
    """The ``dataset.json`` beside an export: which version it is and what it holds."""

    path: str
    dataset_version_id: int | None
    purpose: str
    kind: str
    manifest_sha256: str
    entry_count: int


def read_dataset_facts(path: str | Path, *, field_name: str = "datasets") -> DatasetFacts:
    """Read ``<path>/dataset.json``; raises SpecError naming the export when it is unusable."""
    root = Path(path)
    try:
        data = _read_json(root / "dataset.json")
    except FileNotFoundError as exc:
        raise SpecError(field_name, f"The dataset export {root} has no dataset.json.") from exc
    except (OSError, ValueError) as exc:
        raise SpecError(
            field_name, f"The dataset export {root} has an unreadable dataset.json ({exc})."
        ) from exc
    missing = [k for k in ("purpose", "kind", "manifest_sha256") if k not in data]
    if missing:
        raise SpecError(field_name, f"The dataset.json of {root} is missing {', '.join(missing)}.")
    return DatasetFacts(
        path=str(root),
        dataset_version_id=data.get("dataset_version_id"),
        purpose=str(data["purpose"]),
        kind=str(data["kind"]),
        manifest_sha256=str(data["manifest_sha256"]),
        entry_count=int(data.get("entry_count") or 0),
    )


def check_roles(recipe: str, roles: list[str]) -> None:
    """Raise SpecError (field ``datasets``) unless ``roles`` are exactly the recipe's roles."""
    if recipe not in RECIPES:
        raise SpecError(
            "recipe", f"`recipe` has to be one of {', '.join(RECIPES)} but is {recipe!r}."
        )
    wanted = RECIPE_ROLES[recipe]
    if sorted(roles) != sorted(wanted):
        raise SpecError(
            "datasets",
            f"The {recipe} recipe takes one dataset per role {', '.join(wanted)} but got "
            f"{', '.join(roles) if roles else 'none'}.",
        )


def check_dataset_fits(
    recipe: str, role: str, *, purpose: str, kind: str, model_kind: str, label: str
) -> None:
    """Raise SpecError (field ``datasets``) unless a dataset's purpose and kind fit its role.

    ``label`` names the dataset in the message (an export folder or a dataset version).
    """
    if model_kind not in RECIPE_MODEL_KINDS[recipe]:
        raise SpecError(
            "base_model",
            f"The {recipe} recipe trains {' or '.join(RECIPE_MODEL_KINDS[recipe])} models, "
            f"not {model_kind} models.",
        )
    if purpose not in ROLE_PURPOSES[role]:
        raise SpecError(
            "datasets",
            f"Dataset {label} has purpose {purpose}, which the role {role} does not take "
            f"(it takes {', '.join(ROLE_PURPOSES[role])}).",
        )
    if kind != model_kind:
        raise SpecError(
            "datasets",
            f"Dataset {label} holds {kind} entries but the base model is an {model_kind} model.",
        )


def check_spec(spec: TrainingSpec) -> tuple[ModelFacts, list[DatasetFacts], dict[str, Any]]:
    """Check everything about ``spec`` that can be checked without loading weights.

    Returns the base model's facts, the datasets' facts (in ``spec.datasets`` order) and the
    resolved parameters. The order of checks is recipe, roles, base model, datasets, parameters.

    Raises:
        SpecError: the first problem found, with its field.
    """
    if spec.recipe not in RECIPES:
        raise SpecError(
            "recipe", f"`recipe` has to be one of {', '.join(RECIPES)} but is {spec.recipe!r}."
        )
    check_roles(spec.recipe, [d.role for d in spec.datasets])
    if spec.device not in (None, "cpu", "cuda"):
        raise SpecError(
            "device", f"`device` has to be 'cpu', 'cuda' or null but is {spec.device!r}."
        )
    if not spec.output_dir:
        raise SpecError("output_dir", "`output_dir` has to be a folder path.")
    model = read_model_facts(spec.base_model)
    datasets = []
    for dataset in spec.datasets:
        facts = read_dataset_facts(dataset.path)
        check_dataset_fits(
            spec.recipe,
            dataset.role,
            purpose=facts.purpose,
            kind=facts.kind,
            model_kind=model.kind,
            label=dataset.path,
        )
        datasets.append(facts)
    params = resolve_params(spec.recipe, spec.params, model)
    return model, datasets, params
