"""Experiment pages, under the training area: the list (filtered by model version or training
job, as the job and model version pages link to it) and an experiment's page with its arms ×
axes table, a plot per axis and the links every figure is traced to. Writes go through the
services."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.quality.svg import interval_chart
from stickerloop.errors import ServiceConflict
from stickerloop.ids import parse_id
from stickerloop.list_filters import list_filter_apply, list_filters
from stickerloop.roles import Role, has_role, role_required
from training_bridge.experiments import selectors
from training_bridge.experiments.models import UNIT_AXES, Experiment, ExperimentStatus
from training_bridge.experiments.questions import WIN_RATE_QUESTIONS
from training_bridge.experiments.services.results import experiment_results_compute

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


@role_required(*STAFF)
def experiment_list(request):
    model_version_id = parse_id(request.GET.get("model_version"))
    job_id = parse_id(request.GET.get("job"))
    filters, errors = list_filters(request.GET, statuses=ExperimentStatus.values)
    qs = selectors.experiment_list(model_version_id=model_version_id, job_id=job_id)
    if not errors:
        qs = list_filter_apply(qs, filters)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "experiments/experiment_list.html",
        {
            "page": page,
            "model_version_id": model_version_id,
            "job_id": job_id,
            "filters": filters,
            "errors": errors,
            "statuses": ExperimentStatus.values,
        },
        status=400 if errors else 200,
    )


def _plots(results: selectors.ExperimentResults) -> list[tuple[str, str]]:
    """(axis label, SVG) per axis that has a score: one line per arm, and per source where the
    axis has scores from more than one (raters and the oracle side by side)."""
    plots = []
    for axis, label in results.axes:
        scores = [(trace.arm, s) for trace in results.arms for s in trace.cells.get(axis, [])]
        several = len({s.source for _, s in scores}) > 1
        rows = [
            (
                f"{arm.label} · {score.source}" if several else arm.label,
                score.value,
                score.value if score.low is None else score.low,
                score.value if score.high is None else score.high,
            )
            for arm, score in scores
        ]
        if rows:
            # Rates on their whole range, win rates against the half that means "as good as
            # the base"; latency on its own scale from zero.
            scale = (
                {"domain": (0.0, 1.0), "reference": 0.5 if axis in WIN_RATE_QUESTIONS else 0.0}
                if axis in UNIT_AXES
                else {}
            )
            plots.append((label, interval_chart(rows, title=label, **scale)))
    return plots


def _live_context(request, pk: int) -> dict:
    """What moves on the experiment page until it is settled: status, campaigns, results."""
    experiment = get_object_or_404(
        Experiment.objects.select_related(
            "prompt_set", "rating_campaign", "pair_campaign", "created_by"
        ),
        pk=pk,
    )
    results = selectors.experiment_results(experiment=experiment)
    table = [
        (trace, [trace.cells.get(axis, []) for axis, _ in results.axes]) for trace in results.arms
    ]
    return {
        "experiment": experiment,
        "results": results,
        "table": table,
        "plots": _plots(results),
        "sources": experiment.sources.order_by("pk"),
        "settled": selectors.experiment_is_settled(experiment=experiment),
        "can_compute": has_role(request.user, Role.ML_ENGINEER)
        and experiment.status == ExperimentStatus.RATING,
    }


@role_required(*STAFF)
def experiment_detail(request, pk: int):
    return render(request, "experiments/experiment_detail.html", _live_context(request, pk))


@role_required(*STAFF)
def experiment_live(request, pk: int):
    """The experiment page's live fragment; static/js/live.js polls it until it settles."""
    return render(request, "experiments/_live.html", _live_context(request, pk))


@require_POST
@role_required(Role.ML_ENGINEER)
def experiment_compute(request, pk: int):
    experiment = get_object_or_404(Experiment, pk=pk)
    try:
        scores = experiment_results_compute(experiment=experiment)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Computed {len(scores)} scores.")
    return redirect("experiment-detail", pk=pk)
