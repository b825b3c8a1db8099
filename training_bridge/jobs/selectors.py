"""Training job reads: lists, live progress, loss curves, evaluation results, model lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, F, Prefetch, QuerySet, Sum

from annotation.models import CampaignStatus
from generation.models import ModelVersion
from training_bridge.jobs.models import (
    EvaluationStatus,
    JobStatus,
    TrainingJob,
    TrainingJobDataset,
    TrainingJobEvaluation,
    TrainingJobLoss,
)


def training_job_list(
    *, status: str | None = None, recipe: str | None = None
) -> QuerySet[TrainingJob]:
    qs = TrainingJob.objects.select_related(
        "base_model_version", "output_model_version", "requested_by"
    ).prefetch_related(
        Prefetch(
            "dataset_links",
            queryset=TrainingJobDataset.objects.select_related("dataset_version__rule"),
        )
    )
    if status:
        qs = qs.filter(status=status)
    if recipe:
        qs = qs.filter(recipe=recipe)
    return qs


def training_job_totals_by_status() -> dict[str, dict]:
    """Per status present: the number of jobs and their optimizer steps asked for and done
    (``jobs``, ``total``, ``done``); one query over the job table."""
    rows = (
        TrainingJob.objects.order_by()
        .values("status")
        .annotate(jobs=Count("id"), total=Sum("total_steps"), done=Sum("step"))
    )
    return {row.pop("status"): row for row in rows}


def training_job_progress(*, job_ids: list[int]) -> list[dict]:
    """The live fields the job list polls for, with the evaluation's status and note (None
    before it starts), so that a skipped evaluation shows as the job ends; one query."""
    return list(
        TrainingJob.objects.filter(pk__in=job_ids).values(
            "id",
            "status",
            "step",
            "total_steps",
            "last_loss",
            "seconds_per_step",
            "eta_seconds",
            "error",
            evaluation_status=F("evaluation__status"),
            evaluation_error=F("evaluation__error"),
        )
    )


def training_job_losses(*, job: TrainingJob) -> QuerySet[TrainingJobLoss]:
    return TrainingJobLoss.objects.filter(job=job).order_by("step", "role")


def training_job_loss_curves(
    *, job: TrainingJob, max_points: int = 400
) -> dict[str, list[tuple[int, float]]]:
    """Per role, (step, loss) points in step order, thinned to at most ``max_points`` by
    averaging consecutive points (a long run keeps its shape, the page stays small)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, role, loss in training_job_losses(job=job).values_list("step", "role", "loss"):
        if loss is not None:
            curves.setdefault(role, []).append((step, loss))
    for role, points in curves.items():
        if len(points) > max_points:
            size = -(-len(points) // max_points)
            curves[role] = [
                (chunk[-1][0], sum(loss for _, loss in chunk) / len(chunk))
                for chunk in (points[i : i + size] for i in range(0, len(points), size))
            ]
    return curves


def training_job_evaluation_for_campaign(*, campaign_id: int) -> TrainingJobEvaluation | None:
    """The training job evaluation whose pair campaign is ``campaign_id``, with its campaign;
    None for any other campaign."""
    return (
        TrainingJobEvaluation.objects.select_related("campaign")
        .filter(campaign_id=campaign_id)
        .first()
    )


@dataclass
class WinRate:
    question: str
    new_wins: int
    parent_wins: int
    ties: int
    new_win_rate: float | None


def training_job_evaluation_results(*, job: TrainingJob) -> list[WinRate]:
    """The new model's record against its parent per pairwise question, once the quality
    side has ranked the evaluation campaign (empty before)."""
    evaluation = getattr(job, "evaluation", None)
    if evaluation is None or evaluation.campaign_id is None or job.output_model_version_id is None:
        return []
    from annotation.quality.selectors import ranking_results

    new, parent = job.output_model_version_id, job.base_model_version_id
    out = []
    for result in ranking_results(campaign=evaluation.campaign):
        for pair in result.pairs or []:
            a, b = pair.get("a_id"), pair.get("b_id")
            if {a, b} != {new, parent}:
                continue
            new_is_a = a == new
            new_wins = pair.get("a_wins" if new_is_a else "b_wins", 0)
            parent_wins = pair.get("b_wins" if new_is_a else "a_wins", 0)
            ties = pair.get("ties", 0)
            decided = new_wins + parent_wins + ties
            out.append(
                WinRate(
                    question=result.question_key,
                    new_wins=new_wins,
                    parent_wins=parent_wins,
                    ties=ties,
                    # Ties count half, as in the published side-by-side win rates.
                    new_win_rate=(new_wins + 0.5 * ties) / decided if decided else None,
                )
            )
    return out


def training_job_is_settled(*, job: TrainingJob) -> bool:
    """Whether nothing on the job's page will move any more: the job has ended and so has its
    evaluation (skipped, failed, or its pair campaign closed). A job that succeeded while asking
    for an evaluation is not settled until that evaluation exists and ends, which is what the
    page watches while "Generating with both models" and while raters compare pairs. Reads
    ``job.evaluation`` and its campaign (select them with the job)."""
    if not job.is_finished:
        return False
    if not job.evaluate or job.status != JobStatus.SUCCEEDED:
        return True
    evaluation = getattr(job, "evaluation", None)
    if evaluation is None or evaluation.status == EvaluationStatus.GENERATING:
        return False
    if evaluation.status == EvaluationStatus.OPEN:
        return evaluation.campaign.status == CampaignStatus.CLOSED
    return True


def training_job_evaluation_judgments(*, job: TrainingJob) -> int:
    """Judgments raters have made in the job's evaluation campaign (0 with no campaign): the
    job page tells "no judgments yet" from "results not computed yet"."""
    evaluation = getattr(job, "evaluation", None)
    if evaluation is None or evaluation.campaign_id is None:
        return 0
    from annotation.models import Judgment

    return Judgment.objects.filter(campaign_id=evaluation.campaign_id).count()


@dataclass
class LineageNode:
    version: ModelVersion
    job: TrainingJob | None = None
    datasets: list[TrainingJobDataset] = field(default_factory=list)
    depth: int = 0


@dataclass
class Lineage:
    """A model version's ancestors (root first), itself, and its children."""

    ancestors: list[LineageNode]
    current: LineageNode
    children: list[LineageNode]
    jobs: list[TrainingJob]


def _node(version: ModelVersion, jobs: dict[int, TrainingJob], depth: int) -> LineageNode:
    job = jobs.get(version.pk)
    return LineageNode(
        version=version,
        job=job,
        datasets=list(job.dataset_links.all()) if job else [],
        depth=depth,
    )


def model_version_lineage(*, version: ModelVersion, max_depth: int = 50) -> Lineage:
    """Parent chain up to the root, the children, and the jobs that produced each of them."""
    chain = []
    current = version
    seen = {version.pk}
    while current.parent_id is not None and len(chain) < max_depth:
        current = ModelVersion.objects.get(pk=current.parent_id)
        if current.pk in seen:
            break
        seen.add(current.pk)
        chain.append(current)
    chain.reverse()
    children = list(ModelVersion.objects.filter(parent=version).order_by("created_at", "pk"))
    ids = [v.pk for v in chain] + [version.pk] + [c.pk for c in children]
    jobs = {
        job.output_model_version_id: job
        for job in training_job_list().filter(output_model_version_id__in=ids)
    }
    depth = len(chain)
    return Lineage(
        ancestors=[_node(v, jobs, i) for i, v in enumerate(chain)],
        current=_node(version, jobs, depth),
        children=[_node(c, jobs, depth + 1) for c in children],
        jobs=list(training_job_list().filter(base_model_version=version)),
    )
