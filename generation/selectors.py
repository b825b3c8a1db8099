"""Generation reads."""

from django.db.models import Count, Q, QuerySet, Sum

from generation.models import (
    Candidate,
    CandidateKind,
    GenerationBatch,
    ModelVersion,
    PromptEnhancer,
    PromptImport,
    PromptSet,
)


def model_version_list(*, kind: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("parent")
    return qs.filter(kind=kind) if kind else qs


def prompt_enhancer_list() -> QuerySet[PromptEnhancer]:
    return PromptEnhancer.objects.all()


def prompt_set_list() -> QuerySet[PromptSet]:
    # Ordered here: a grouped query ignores Meta.ordering.
    return (
        PromptSet.objects.select_related("enhancer")
        .annotate(prompt_count=Count("prompts"))
        .order_by("-created_at", "-id")
    )


def prompt_import_list() -> QuerySet[PromptImport]:
    """Prompt imports by a task, newest first."""
    return PromptImport.objects.all()


def batch_list() -> QuerySet[GenerationBatch]:
    return GenerationBatch.objects.select_related(
        "prompt_set", "enhancer", "requested_by"
    ).prefetch_related("model_versions")


def batch_progress(*, batch_ids: list[int]) -> list[dict]:
    """The live counters the batch list polls for; one query."""
    return list(
        GenerationBatch.objects.filter(pk__in=batch_ids).values(
            "id", "status", "total", "done_count", "failed_count", "error"
        )
    )


def batch_totals_by_status() -> dict[str, dict]:
    """Per status present: the number of batches and their candidates asked for, stored and
    failed (``batches``, ``total``, ``done``, ``failed``); one query over the batch table."""
    rows = (
        GenerationBatch.objects.order_by()
        .values("status")
        .annotate(
            batches=Count("id"),
            total=Sum("total"),
            done=Sum("done_count"),
            failed=Sum("failed_count"),
        )
    )
    return {row.pop("status"): row for row in rows}


def candidate_list(
    *,
    batch: int | None = None,
    model_version: int | None = None,
    prompt: int | None = None,
    prompt_set: int | None = None,
    tag: str | None = None,
    kind: str | None = None,
    source: int | None = None,
) -> QuerySet[Candidate]:
    qs = Candidate.objects.select_related("model_version", "prompt", "source")
    filters = Q()
    if batch is not None:
        filters &= Q(batch_id=batch)
    if model_version is not None:
        filters &= Q(model_version_id=model_version)
    if prompt is not None:
        filters &= Q(prompt_id=prompt)
    if prompt_set is not None:
        filters &= Q(prompt__prompt_set_id=prompt_set)
    if tag:
        filters &= Q(prompt__tags__name=tag)
    if kind:
        filters &= Q(kind=kind)
    if source is not None:
        filters &= Q(source_id=source)
    return qs.filter(filters).order_by("id")


def candidates_by_id(*, ids: list[int]) -> dict[int, Candidate]:
    """The candidates among ``ids``, by id (any kind: the batch says which are not stickers)."""
    return {c.pk: c for c in Candidate.objects.filter(pk__in=[i for i in ids if 0 < i < 2**63])}


def dataset_version_stickers(*, version_id: int) -> list[Candidate]:
    """The sticker candidates of a dataset version, in manifest order.

    Read through the entries' reverse relation, so generation names no training_bridge module
    (that app sits above it); a version that does not exist holds none.
    """
    if not 0 < version_id < 2**63:
        return []
    return list(
        Candidate.objects.filter(
            dataset_entries__version_id=version_id, kind=CandidateKind.STICKER
        ).order_by("dataset_entries__position")
    )
