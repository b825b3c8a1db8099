"""Reading experiments: lists, the candidates every arm shares, and results traced back to the
model versions, jobs, dataset versions, batches and campaigns they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from annotation.models import CampaignStatus, Judgment
from generation.models import Candidate
from training_bridge.experiments.models import (
    AXES_BY_KIND,
    Axis,
    Experiment,
    ExperimentArm,
    ExperimentScore,
    ExperimentStatus,
    ScoreSource,
)
from training_bridge.jobs.evaluation import evaluation_key
from training_bridge.jobs.models import TrainingJob, TrainingJobDataset

PLATFORM_SOURCES = tuple(ScoreSource.values)


def experiment_list(
    *, model_version_id: int | None = None, job_id: int | None = None
) -> QuerySet[Experiment]:
    """Experiments, newest first; with ``model_version_id``, those with an arm of that model
    version; with ``job_id``, those with an arm of the model version the job trained."""
    qs = Experiment.objects.prefetch_related(
        Prefetch("arms", queryset=ExperimentArm.objects.select_related("model_version"))
    )
    if model_version_id is not None:
        qs = qs.filter(arms__model_version_id=model_version_id)
    if job_id is not None:
        qs = qs.filter(arms__model_version__produced_by_job__id=job_id)
    return qs.distinct().order_by("-created_at", "-id")


# A judgment whose transaction began just before a computation read the campaign but committed
# after it carries a created_at slightly before ``results_computed_at``; looking back this far
# catches it, at the price of at most one extra computation.
NEW_JUDGMENT_LOOKBACK = timedelta(seconds=10)


def experiments_with_new_judgments() -> list[int]:
    """Ids of experiments in rating whose results have not read every judgment of their
    campaigns: judgments and no results yet, or judgments made since the last computation
    (less NEW_JUDGMENT_LOOKBACK). One query, whatever the number of experiments."""
    judgments = Judgment.objects.filter(
        Q(campaign_id=OuterRef("rating_campaign_id")) | Q(campaign_id=OuterRef("pair_campaign_id"))
    )
    return list(
        Experiment.objects.filter(status=ExperimentStatus.RATING)
        .filter(
            Q(Exists(judgments), results_computed_at__isnull=True)
            | Q(
                Exists(
                    judgments.filter(
                        created_at__gte=OuterRef("results_computed_at") - NEW_JUDGMENT_LOOKBACK
                    )
                )
            )
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def experiment_arms(experiment: Experiment) -> list[ExperimentArm]:
    return list(
        experiment.arms.select_related("model_version", "batch", "prompt_set").order_by("position")
    )


def experiment_candidates(
    *, arms: list[ExperimentArm]
) -> tuple[dict[int, dict[tuple[int, int], Candidate]], list[tuple[int, int]]]:
    """Each arm's candidates by comparison key (prompt position or source, and seed), kept only
    for the keys every arm has a candidate for, and those keys in order: arms are compared on
    identical inputs only, so a candidate one arm failed to make drops that input for all."""
    by_arm: dict[int, dict[tuple[int, int], Candidate]] = {arm.pk: {} for arm in arms}
    batch_arm = {arm.batch_id: arm.pk for arm in arms if arm.batch_id is not None}
    candidates = (
        Candidate.objects.filter(batch_id__in=list(batch_arm))
        .select_related("prompt")
        .order_by("id")
    )
    for candidate in candidates:
        by_arm[batch_arm[candidate.batch_id]][evaluation_key(candidate)] = candidate
    common = set.intersection(*(set(found) for found in by_arm.values())) if by_arm else set()
    keys = sorted(common)
    return {arm_id: {k: found[k] for k in keys} for arm_id, found in by_arm.items()}, keys


@dataclass
class ArmTrace:
    """Where an arm's figures come from."""

    arm: ExperimentArm
    job: TrainingJob | None
    datasets: list[TrainingJobDataset]
    cells: dict[str, list[ExperimentScore]] = field(default_factory=dict)


@dataclass
class ExperimentResults:
    experiment: Experiment
    axes: list[tuple[str, str]]
    arms: list[ArmTrace]
    sources: list[str]


def _source_order(source: str) -> tuple[int, str]:
    """The platform's own sources first (raters, then measurements), instruments after."""
    return (PLATFORM_SOURCES.index(source), "") if source in PLATFORM_SOURCES else (9, source)


def experiment_results(*, experiment: Experiment) -> ExperimentResults:
    """Every arm with its job and dataset versions and, per axis of the experiment's kind, its
    scores from every source (raters and the platform first). Four queries."""
    arms = experiment_arms(experiment)
    jobs = {
        job.output_model_version_id: job
        for job in TrainingJob.objects.filter(
            output_model_version_id__in=[arm.model_version_id for arm in arms]
        ).prefetch_related(
            Prefetch(
                "dataset_links",
                queryset=TrainingJobDataset.objects.select_related("dataset_version").order_by(
                    "id"
                ),
            )
        )
    }
    scores: dict[int, dict[str, list[ExperimentScore]]] = {arm.pk: {} for arm in arms}
    for score in ExperimentScore.objects.filter(arm__experiment=experiment):
        scores[score.arm_id].setdefault(score.axis, []).append(score)
    traces = []
    for arm in arms:
        job = jobs.get(arm.model_version_id)
        cells = {
            axis: sorted(found, key=lambda s: _source_order(s.source))
            for axis, found in scores[arm.pk].items()
        }
        traces.append(
            ArmTrace(
                arm=arm,
                job=job,
                datasets=list(job.dataset_links.all()) if job else [],
                cells=cells,
            )
        )
    sources = sorted(
        {s.source for found in scores.values() for group in found.values() for s in group},
        key=_source_order,
    )
    kind_axes = AXES_BY_KIND[experiment.kind]
    return ExperimentResults(
        experiment=experiment,
        axes=[(axis, Axis(axis).label) for axis in kind_axes],
        arms=traces,
        sources=sources,
    )


def experiment_result_rows(results: ExperimentResults) -> list[dict]:
    """One flat row per score, with everything it is traced to: the CSV and JSON export."""
    experiment = results.experiment
    rows = []
    for trace in results.arms:
        arm = trace.arm
        datasets = ";".join(
            f"{link.role}:{link.dataset_version_id}:{link.manifest_sha256}"
            for link in trace.datasets
        )
        for axis, _ in results.axes:
            for score in trace.cells.get(axis, []):
                rows.append(
                    {
                        "experiment_id": experiment.pk,
                        "arm_id": arm.pk,
                        "arm": arm.label,
                        "is_base": arm.is_base,
                        "model_version_id": arm.model_version_id,
                        "model_version": arm.model_version.name,
                        "template": arm.template,
                        "job_id": trace.job.pk if trace.job else None,
                        "dataset_versions": datasets,
                        "prompt_set_id": arm.prompt_set_id,
                        "batch_id": score.batch_id or arm.batch_id,
                        "campaign_id": score.campaign_id,
                        "axis": axis,
                        "source": score.source,
                        "value": score.value,
                        "low": score.low,
                        "high": score.high,
                        "n": score.n,
                        "method": score.method,
                        "details": score.details,
                        "recorded_at": score.recorded_at,
                    }
                )
    return rows


def experiment_is_settled(*, experiment: Experiment) -> bool:
    """Whether nothing on the experiment's page will move any more: it failed, or both its
    campaigns are closed (their results no longer change). Generating, or rating while a
    campaign is open, is not settled. Reads the campaigns (select them with the experiment)."""
    if experiment.status == ExperimentStatus.FAILED:
        return True
    if experiment.status != ExperimentStatus.RATING:
        return False
    return all(
        campaign.status == CampaignStatus.CLOSED
        for campaign in (experiment.rating_campaign, experiment.pair_campaign)
    )
