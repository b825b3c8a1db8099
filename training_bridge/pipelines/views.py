"""Pipeline pages, under the training area: the list, the declaration form, and a pipeline's
page with each stage's state and links, refreshed while it runs. Writes go through the
services."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from stickerloop.errors import ServiceConflict, validation_error_detail
from stickerloop.list_filters import list_page
from stickerloop.roles import Role, has_role, role_required
from training_bridge.pipelines import selectors
from training_bridge.pipelines.models import Pipeline, PipelineStatus
from training_bridge.pipelines.services.declaration import pipeline_create
from training_bridge.pipelines.services.pipelines import pipeline_resume

STAFF = (Role.CURATOR, Role.ML_ENGINEER)
EXAMPLE_STAGES = [
    {"name": "weak", "kind": "dataset", "rule": 1, "role": "train", "dataset_version": 1},
    {
        "name": "base",
        "kind": "training",
        "recipe": "finetune",
        "base_model_version": 1,
        "params": {"max_train_steps": 500},
    },
    {"name": "alignment", "kind": "dataset", "rule": 2, "role": "content"},
    {"name": "style", "kind": "dataset", "rule": 3, "role": "style"},
    {"name": "tailored", "kind": "training", "recipe": "style_tailoring", "base_stage": "base"},
    {"name": "evaluation", "kind": "evaluation", "arms": ["tailored"], "base_stage": "base"},
]


@role_required(*STAFF)
def pipeline_list(request):
    context = list_page(request.GET, selectors.pipeline_list(), statuses=PipelineStatus.values)
    return render(
        request,
        "pipelines/pipeline_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


@role_required(Role.ML_ENGINEER)
def pipeline_create_page(request):
    """Declare a pipeline: a name, a description and the stages as JSON (as the API takes)."""
    if request.method != "POST":
        values = {"stages": json.dumps(EXAMPLE_STAGES, indent=2)}
        return render(request, "pipelines/pipeline_form.html", {"values": values, "errors": {}})
    values = request.POST
    errors: dict[str, list[str]] = {}
    try:
        stages = json.loads(values.get("stages") or "")
    except ValueError as exc:
        errors["stages"] = [f"Stages must be a JSON list of objects ({exc})."]
    else:
        try:
            pipeline = pipeline_create(
                name=values.get("name", ""),
                description=values.get("description", ""),
                stages=stages,
                created_by=request.user,
            )
        except ValidationError as exc:
            detail = validation_error_detail(exc)
            errors = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        else:
            messages.success(request, f"Pipeline {pipeline.pk} declared; its first stage starts.")
            return redirect("pipeline-detail", pk=pipeline.pk)
    return render(
        request, "pipelines/pipeline_form.html", {"values": values, "errors": errors}, status=400
    )


def _live_context(request, pipeline: Pipeline) -> dict:
    return {
        "pipeline": pipeline,
        "stages": selectors.pipeline_stages(pipeline=pipeline),
        "can_act": has_role(request.user, Role.ML_ENGINEER),
    }


@role_required(*STAFF)
def pipeline_detail(request, pk: int):
    pipeline = get_object_or_404(Pipeline.objects.select_related("created_by"), pk=pk)
    return render(request, "pipelines/pipeline_detail.html", _live_context(request, pipeline))


@role_required(*STAFF)
def pipeline_live(request, pk: int):
    """The part of the pipeline page that moves: its status and the stages table."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    return render(request, "pipelines/_live.html", _live_context(request, pipeline))


@require_POST
@role_required(Role.ML_ENGINEER)
def pipeline_resume_page(request, pk: int):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    try:
        pipeline_resume(pipeline=pipeline)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Resumed: the failed stage starts again.")
    return redirect("pipeline-detail", pk=pk)
