"""Pipeline reads: the list, one pipeline with its stages and what they link, the pipelines an
announced event concerns."""

from __future__ import annotations

from django.db.models import Count, F, Prefetch, Q, QuerySet

from training_bridge.models import DatasetVersion
from training_bridge.pipelines.models import (
    Pipeline,
    PipelineStage,
    PipelineStatus,
    StageKind,
    StageStatus,
)


def pipeline_list(*, status: str | None = None) -> QuerySet[Pipeline]:
    """Newest first, each with its stage count and the stage it is at (one query for the page,
    one for the current stages)."""
    # Ordered here: a grouped query ignores Meta.ordering.
    qs = (
        Pipeline.objects.select_related("created_by")
        .annotate(stage_count=Count("stages"))
        .order_by("-created_at", "-id")
    )
    if status:
        qs = qs.filter(status=status)
    return qs.prefetch_related(
        Prefetch(
            "stages",
            queryset=PipelineStage.objects.filter(position=F("pipeline__current_position")),
            to_attr="current_stages",
        )
    )


def pipeline_stages(*, pipeline: Pipeline) -> list[PipelineStage]:
    """Every stage in order, with the rows it links (one query)."""
    return list(
        PipelineStage.objects.filter(pipeline=pipeline)
        .select_related(
            "rule",
            "dataset_version__rule",
            "base_model_version",
            "base_stage",
            "training_trigger",
            "job__output_model_version",
            "experiment",
            "prompt_set",
        )
        .order_by("position")
    )


def pipelines_waiting_on(*, object_type: str, object_id: int) -> list[int]:
    """The running pipelines whose current stage an announcement may settle: a dataset stage
    waiting on the published version's rule, or the stage whose job ended."""
    current = Q(pipeline__status=PipelineStatus.RUNNING, position=F("pipeline__current_position"))
    if object_type == "dataset_version":
        rule_id = DatasetVersion.objects.filter(pk=object_id).values_list("rule_id", flat=True)
        match = Q(kind=StageKind.DATASET, status=StageStatus.WAITING, rule_id__in=rule_id)
    elif object_type == "training_job":
        match = Q(kind=StageKind.TRAINING, job_id=object_id)
    else:
        return []
    return list(
        PipelineStage.objects.filter(current & match)
        .order_by("pipeline_id")
        .values_list("pipeline_id", flat=True)
    )


def pipelines_running() -> list[int]:
    return list(
        Pipeline.objects.filter(status=PipelineStatus.RUNNING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
