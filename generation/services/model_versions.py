"""Model versions: register a diffusers model, and the tiny offline defaults."""

from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from generation import pipelines
from generation.model_store import model_folder_local, model_uri_problem
from generation.models import ModelRole, ModelVersion
from generation.pipelines import ModelLoadError


def _local_folder(uri: str) -> Path | None:
    """The local folder ``uri`` names, or None for a bucket path or hub id."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    path = Path(uri.removeprefix("file://"))
    if path.is_absolute() or uri.startswith("."):
        return path
    return None


@transaction.atomic
def model_version_register(
    *,
    name: str,
    kind: str,
    uri: str,
    role: str = ModelRole.BASE,
    default_params: dict | None = None,
    parent: ModelVersion | None = None,
    description: str = "",
    provenance: dict | None = None,
    created_by: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Register a diffusers model. A local folder must hold a ``model_index.json``; a bucket
    URI must name a complete model in the configured bucket; with a bucket, a local folder must
    lie in the models directory (``generation.model_store``)."""
    errors: dict[str, list[str]] = {}
    folder = _local_folder(uri)
    max_tokens = None
    problem = model_uri_problem(uri, folder)
    # What to check the model's files in: the folder, or the bucket model's configuration files
    # copied here (weights stay in the bucket until a worker loads them).
    readable, shown = folder, folder
    if problem is None and uri.startswith("s3://"):
        shown = uri
        try:
            readable = Path(model_folder_local(uri, weights=False))
        except ModelLoadError as exc:
            problem = str(exc)
    if problem is not None:
        errors["uri"] = [problem]
    elif readable is not None:
        if not (readable / "model_index.json").is_file():
            errors["uri"] = [f"No diffusers model at {shown}: model_index.json is missing."]
        else:
            try:
                max_tokens = pipelines.model_prompt_token_limit(str(readable))
            except Exception:
                # A model without a CLIP tokenizer has no token limit we can check here.
                max_tokens = None
    if parent is not None and parent.kind != kind:
        errors["parent"] = [f"The parent is an {parent.kind} model, not {kind}."]
    if errors:
        raise ValidationError(errors)
    version = ModelVersion(
        name=name,
        kind=kind,
        role=role,
        uri=str(folder) if folder is not None else uri,
        default_params=default_params or {},
        parent=parent,
        description=description,
        provenance=provenance or {},
        max_prompt_tokens=max_tokens,
        created_by=created_by,
    )
    version.full_clean()
    version.save()
    return version


def default_models_register(*, root: Path, source: Path | None = None) -> list[ModelVersion]:
    """Install the default models under ``root`` and register them by name.

    The defaults are the sticker world's trained models where their weights are committed
    (``source``, by default ``generation/world/weights``, holds a manifest); until then, the
    random tiny models built from configuration. Idempotent: folders that match are reused and
    existing versions are pointed at them. A corrupt committed file raises DefaultModelsError
    naming it.
    """
    from generation.pipelines import build_tiny_models
    from generation.world.defaults import WEIGHTS_DIR, has_weights, install_default_models

    source = WEIGHTS_DIR if source is None else source
    specs = install_default_models(root, source=source) if has_weights(source) else None
    versions = []
    for spec in specs or build_tiny_models(root):
        existing = ModelVersion.objects.filter(name=spec["name"]).first()
        if existing is not None:
            # A site set up before the trained defaults points its versions at the new folders,
            # with the parameters, description and prompt limit of the model now there.
            current = {
                "uri": spec["uri"],
                "default_params": spec["default_params"],
                "description": spec["description"],
                "max_prompt_tokens": pipelines.model_prompt_token_limit(spec["uri"]),
            }
            changed = [key for key, value in current.items() if getattr(existing, key) != value]
            for key in changed:
                setattr(existing, key, current[key])
            if changed:
                existing.save(update_fields=changed)
            versions.append(existing)
            continue
        versions.append(
            model_version_register(
                name=spec["name"],
                kind=spec["kind"],
                role=spec["role"],
                uri=spec["uri"],
                default_params=spec["default_params"],
                description=spec["description"],
            )
        )
    return versions
