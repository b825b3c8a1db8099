"""Training pages: the job list with live progress bars, a form to start a job, the job page
with its live loss curve, and a model version's lineage. Writes go through the services."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from generation.models import ModelVersion, PromptSet
from stickerloop.errors import ServiceConflict, validation_error_detail
from stickerloop.list_filters import list_filter_apply, list_filters
from stickerloop.roles import Role, has_role, role_required
from training_bridge.jobs import charts, selectors
from training_bridge.jobs.evaluation import (
    DEFAULT_EVALUATION_SOURCES,
    evaluation_prompt_set_default,
    evaluation_sources_default,
)
from training_bridge.jobs.lifecycle import (
    training_job_cancel,
    training_job_create,
    training_job_resume,
)
from training_bridge.jobs.models import DatasetRole, JobStatus, Launcher, Recipe, TrainingJob
from training_bridge.jobs.triggers import dataset_version_publish_and_train
from training_bridge.models import DatasetVersion, VersionStatus
from training_bridge.recipes.spec import RECIPE_ROLES

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    detail = validation_error_detail(exc)
    return detail if isinstance(detail, dict) else {"non_field_errors": detail}


@role_required(*STAFF)
def job_list(request):
    filters, errors = list_filters(request.GET, statuses=JobStatus.values)
    recipe = request.GET.get("recipe") or ""
    if recipe and recipe not in Recipe.values:
        errors["recipe"] = f"Recipe: {recipe!r} is none of {', '.join(Recipe.values)}."
    # A refused query lists every job, as with no filter, beside the reason.
    qs = selectors.training_job_list(recipe=None if errors else recipe or None)
    if not errors:
        qs = list_filter_apply(qs, filters)
    qs = qs.select_related("evaluation")
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "training_jobs/job_list.html",
        {
            "page": page,
            "recipes": Recipe.choices,
            "filters": {**filters, "recipe": recipe},
            "errors": errors,
            "statuses": JobStatus.values,
        },
        status=400 if errors else 200,
    )


def _form_context(values: dict, errors: dict | None = None) -> dict:
    published = DatasetVersion.objects.filter(status=VersionStatus.PUBLISHED).select_related("rule")
    return {
        "values": values,
        "errors": errors or {},
        "recipes": [
            (value, label, ", ".join(RECIPE_ROLES[value])) for value, label in Recipe.choices
        ],
        "roles": DatasetRole.choices,
        "launchers": Launcher.choices,
        "base_models": ModelVersion.objects.filter(is_active=True).order_by("name"),
        "versions": published.order_by("-created_at", "-id")[:200],
        "prompt_sets": PromptSet.objects.filter(is_held_out=True).order_by("-created_at")[:50],
        "evaluation_default": evaluation_prompt_set_default(),
        "evaluation_sources": len(evaluation_sources_default(DEFAULT_EVALUATION_SOURCES)),
    }


@role_required(Role.ML_ENGINEER)
def job_create(request):
    """Start a job by hand: recipe, base model, one published version per role, parameters."""
    if request.method != "POST":
        return render(request, "training_jobs/job_form.html", _form_context({"params": "{}"}))
    values = request.POST
    errors: dict[str, list[str]] = {}
    try:
        params = json.loads(values.get("params") or "{}")
        if not isinstance(params, dict):
            raise ValueError
    except ValueError:
        params = None
        errors["params"] = ['Parameters must be a JSON object, e.g. {"max_train_steps": 500}.']
    base = ModelVersion.objects.filter(pk=values.get("base_model_version") or None).first()
    if base is None:
        errors["base_model_version"] = ["Choose a base model version."]
    datasets = {}
    for role, _ in DatasetRole.choices:
        chosen = values.get(f"dataset_{role}")
        if chosen:
            version = DatasetVersion.objects.filter(pk=chosen).select_related("rule").first()
            if version is None:
                errors[f"datasets.{role}"] = [f"Dataset version {chosen} does not exist."]
            else:
                datasets[role] = version
    prompt_set = PromptSet.objects.filter(pk=values.get("evaluation_prompt_set") or None).first()
    if not errors:
        try:
            job = training_job_create(
                recipe=values.get("recipe", ""),
                base_model_version=base,
                datasets=datasets,
                params=params,
                name=values.get("name", "").strip(),
                launcher=values.get("launcher") or Launcher.QUEUE,
                evaluate=values.get("evaluate") == "on",
                evaluation_prompt_set=prompt_set,
                requested_by=request.user,
            )
        except ValidationError as exc:
            errors = _errors(exc)
        except ServiceConflict as exc:
            errors = {"non_field_errors": [str(exc)]}
        else:
            messages.success(request, f"Job {job.pk} created.")
            return redirect("training-job-detail", pk=job.pk)
    return render(request, "training_jobs/job_form.html", _form_context(values, errors), status=400)


def _live_job(pk: int) -> TrainingJob:
    """The job with what its live part shows: models, evaluation and its campaign."""
    return get_object_or_404(
        selectors.training_job_list().select_related("evaluation__campaign"), pk=pk
    )


def _live_context(job: TrainingJob) -> dict:
    """The parts of the job page that move until it is settled: progress, loss curve, log
    tail, output and the evaluation with its win rates."""
    curves = selectors.training_job_loss_curves(job=job)
    return {
        "job": job,
        "chart": charts.loss_curve_svg(curves, total_steps=job.total_steps),
        "roles": sorted(curves),
        "settled": selectors.training_job_is_settled(job=job),
        "evaluation": getattr(job, "evaluation", None),
        "win_rates": selectors.training_job_evaluation_results(job=job),
        "judgments": selectors.training_job_evaluation_judgments(job=job),
    }


@role_required(*STAFF)
def job_detail(request, pk: int):
    job = _live_job(pk)
    context = _live_context(job)
    context.update(
        {
            "links": job.dataset_links.all(),
            "params": sorted(job.params.items()),
            "can_act": has_role(request.user, Role.ML_ENGINEER),
        }
    )
    return render(request, "training_jobs/job_detail.html", context)


@role_required(*STAFF)
def job_live(request, pk: int):
    """The job page's live fragment (see ``_live_context``); static/js/live.js polls it."""
    job = _live_job(pk)
    return render(request, "training_jobs/_live.html", _live_context(job))


@require_POST
@role_required(Role.ML_ENGINEER)
def job_action(request, pk: int, action: str):
    job = get_object_or_404(TrainingJob, pk=pk)
    try:
        if action == "cancel":
            training_job_cancel(job=job, cancelled_by=request.user)
        elif action == "resume":
            training_job_resume(job=job, resumed_by=request.user)
        else:
            messages.error(request, f"Unknown action {action!r}.")
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(f"{k}: {' '.join(v)}" for k, v in _errors(exc).items()))
    return redirect("training-job-detail", pk=pk)


@role_required(*STAFF)
def model_lineage(request, pk: int):
    version = get_object_or_404(ModelVersion.objects.select_related("parent"), pk=pk)
    lineage = selectors.model_version_lineage(version=version)
    graph = charts.lineage_svg(
        lineage, url_for=lambda v: reverse("model-version-lineage", kwargs={"pk": v.pk})
    )
    return render(
        request,
        "training_jobs/lineage.html",
        {"version": version, "lineage": lineage, "graph": graph},
    )


@require_POST
@role_required(Role.CURATOR)
def version_publish(request, pk: int):
    """Publish a dataset version from its page; its rule's training trigger creates the job."""
    version = get_object_or_404(DatasetVersion, pk=pk)
    try:
        dataset_version_publish_and_train(version=version, published_by=request.user)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        detail = validation_error_detail(exc)
        if isinstance(detail, dict):
            messages.error(request, " ".join(f"{k}: {' '.join(v)}" for k, v in detail.items()))
        else:
            messages.error(request, " ".join(detail))
    return redirect("dataset-version-detail", pk=pk)
