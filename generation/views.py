"""Pages for curators and engineers: batches with live progress, and the candidate gallery."""

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from generation import selectors
from generation.models import ChunkStatus
from stickerloop.roles import Role, role_required

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


@role_required(*STAFF)
def batch_list(request):
    page = Paginator(selectors.batch_list(), 25).get_page(request.GET.get("page"))
    return render(request, "generation/batch_list.html", {"page": page})


@role_required(*STAFF)
def batch_detail(request, pk: int):
    batch = get_object_or_404(selectors.batch_list(), pk=pk)
    chunks = batch.chunks.select_related("model_version")
    candidates = selectors.candidate_list(batch=batch.pk)[:48]
    return render(
        request,
        "generation/batch_detail.html",
        {
            "batch": batch,
            "chunks": chunks,
            "failed_chunks": chunks.filter(status=ChunkStatus.FAILED),
            "candidates": candidates,
        },
    )


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@role_required(*STAFF)
def candidate_gallery(request):
    filters = {
        "batch": _int_or_none(request.GET.get("batch")),
        "model_version": _int_or_none(request.GET.get("model_version")),
        "prompt": _int_or_none(request.GET.get("prompt")),
        "tag": request.GET.get("tag") or None,
        "kind": request.GET.get("kind")
        if request.GET.get("kind") in ("sticker", "animation")
        else None,
    }
    page = Paginator(selectors.candidate_list(**filters), 48).get_page(request.GET.get("page"))
    return render(
        request,
        "generation/gallery.html",
        {
            "page": page,
            "filters": filters,
            "model_versions": selectors.model_version_list(),
            "background": request.GET.get("bg", "checker"),
        },
    )


@role_required(*STAFF)
def model_version_list(request):
    return render(
        request, "generation/model_versions.html", {"versions": selectors.model_version_list()}
    )
