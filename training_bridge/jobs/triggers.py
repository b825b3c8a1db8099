"""Training triggers: the training job a published version's rule asks for.

Curation (``training_bridge``) never imports the jobs app; publishing with a trigger lives here,
on the training side, and creates the job by a direct call in the publishing transaction."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.models import ModelVersion
from stickerloop.errors import ServiceConflict
from training_bridge.audit import audit_record
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import Recipe, TrainingJob
from training_bridge.models import (
    AuditAction,
    DatasetVersion,
    TrainingTrigger,
    TriggerStatus,
    VersionStatus,
)
from training_bridge.recipes.spec import RECIPE_ROLES
from training_bridge.versions import dataset_version_publish


@transaction.atomic
def training_job_create_from_trigger(
    *,
    dataset_version: DatasetVersion,
    trigger: dict,
    requested_by: AbstractBaseUser | None = None,
) -> TrainingJob:
    """The job a dataset publish asks for (the rule's ``training_trigger``).

    ``trigger``: ``{"recipe", "base_model_version_id", "params", "role"}``; ``role`` is the
    published version's role (default: the recipe's only role). Recipes with two roles name the
    other dataset version in ``"datasets": {"<role>": <dataset version id>}``. Optional:
    ``"evaluate"`` (default true), ``"name"``, and ``"pipeline"`` and ``"pipeline_stage"`` (the
    pipeline stage that asked, kept in the job's ``trigger``).

    Raises:
        ValidationError: a malformed trigger, or a job that does not fit its recipe.
    """
    if not isinstance(trigger, dict):
        raise ValidationError({"trigger": ["The training trigger must be an object."]})
    recipe = trigger.get("recipe")
    if recipe not in Recipe.values:
        raise ValidationError(
            {
                "trigger.recipe": [
                    f"Unknown recipe {recipe!r}; use one of {', '.join(Recipe.values)}."
                ]
            }
        )
    roles = RECIPE_ROLES[recipe]
    role = trigger.get("role") or (roles[0] if len(roles) == 1 else None)
    if role not in roles:
        raise ValidationError(
            {
                "trigger.role": [
                    f"The {recipe} recipe takes the roles {', '.join(roles)}, not {role!r}."
                ]
            }
        )
    base_id = trigger.get("base_model_version_id")
    base = ModelVersion.objects.filter(pk=base_id).first() if isinstance(base_id, int) else None
    if base is None:
        raise ValidationError(
            {"trigger.base_model_version_id": [f"No model version with id {base_id!r}."]}
        )
    datasets = {role: dataset_version}
    others = trigger.get("datasets") or {}
    if not isinstance(others, dict):
        raise ValidationError({"trigger.datasets": ["Must map roles to dataset version ids."]})
    for other_role, version_id in others.items():
        version = DatasetVersion.objects.filter(pk=version_id).first()
        if version is None:
            raise ValidationError(
                {
                    "trigger.datasets": [
                        f"No dataset version with id {version_id!r} for role {other_role!r}."
                    ]
                }
            )
        datasets[other_role] = version
    params = trigger.get("params") or {}
    return training_job_create(
        recipe=recipe,
        base_model_version=base,
        datasets=datasets,
        params=params,
        name=str(trigger.get("name") or f"{recipe} on {dataset_version}"),
        evaluate=bool(trigger.get("evaluate", True)),
        requested_by=requested_by,
        trigger={
            "source": "dataset_publish",
            "dataset_version_id": dataset_version.pk,
            **{key: trigger[key] for key in ("pipeline", "pipeline_stage") if key in trigger},
        },
    )


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def _save(trigger: TrainingTrigger, fields: list[str]) -> None:
    # A new trigger is stored once its outcome is known: it has no state before it fires.
    trigger.save(update_fields=fields if trigger.pk else None)


def _trigger_fire(trigger: TrainingTrigger) -> TrainingTrigger:
    """Create the training job of a new (unsaved) or failed trigger, and store the outcome.

    Assumes the caller is inside a transaction and holds a failed trigger's row locked. The job
    creation runs in a savepoint, so a refused job leaves the caller's work (the publish) intact.
    """
    actor = trigger.requested_by
    try:
        with transaction.atomic():
            job = training_job_create_from_trigger(
                dataset_version=trigger.version, trigger=dict(trigger.trigger), requested_by=actor
            )
    except (ValidationError, ServiceConflict, ValueError) as exc:
        trigger.status = TriggerStatus.FAILED
        trigger.error = _error_text(exc)
        _save(trigger, ["status", "error"])
        audit_record(
            AuditAction.TRIGGER_FAILED,
            actor=actor,
            version=trigger.version,
            details={"trigger": trigger.trigger, "error": trigger.error},
        )
        return trigger
    trigger.status = TriggerStatus.FIRED
    trigger.job_id = job.pk
    trigger.error = ""
    trigger.fired_at = timezone.now()
    _save(trigger, ["status", "job_id", "error", "fired_at"])
    audit_record(
        AuditAction.TRIGGER_FIRED,
        actor=actor,
        version=trigger.version,
        details={"trigger": trigger.trigger, "job_id": job.pk},
    )
    return trigger


@transaction.atomic
def training_trigger_create(
    *,
    version: DatasetVersion,
    trigger: dict,
    origin: str,
    requested_by: AbstractBaseUser | None = None,
) -> TrainingTrigger:
    """Fire a new trigger on a published version and store it with its outcome (fired with the
    job, or failed with the reason): how a pipeline's training stage starts when the version
    it waited for is published. The rule's own trigger fires in the publish itself
    (``dataset_version_publish_and_train``)."""
    if version.status != VersionStatus.PUBLISHED:
        raise ServiceConflict(
            f"Version {version.pk} is {version.status}; only published versions train."
        )
    return _trigger_fire(
        TrainingTrigger(version=version, trigger=trigger, origin=origin, requested_by=requested_by)
    )


@transaction.atomic
def training_trigger_fire(*, trigger: TrainingTrigger) -> TrainingTrigger:
    """Fire a failed trigger again (after the cause was fixed)."""
    trigger = (
        TrainingTrigger.objects.select_for_update().select_related("version").get(pk=trigger.pk)
    )
    if trigger.status == TriggerStatus.FIRED:
        raise ServiceConflict(f"The trigger of version {trigger.version_id} has fired already.")
    if trigger.version.status != VersionStatus.PUBLISHED:
        raise ServiceConflict(f"Version {trigger.version_id} is {trigger.version.status}.")
    return _trigger_fire(trigger)


@transaction.atomic
def dataset_version_publish_and_train(
    *, version: DatasetVersion, published_by: AbstractBaseUser | None = None
) -> DatasetVersion:
    """Publish a draft (``versions.dataset_version_publish``) and start its rule's training
    trigger, if any: the training job is created in the same transaction.

    A trigger whose job is refused does not undo the publish: it is recorded as failed, with
    the reason, and can be fired again (``training_trigger_fire``).
    """
    version = dataset_version_publish(version=version, published_by=published_by)
    if version.rule.training_trigger:
        _trigger_fire(
            TrainingTrigger(
                version=version, trigger=version.rule.training_trigger, requested_by=published_by
            )
        )
    return version
