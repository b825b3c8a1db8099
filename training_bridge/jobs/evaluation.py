"""Evaluating a job's model version against its parent: a generation batch on both and a
side-by-side annotation campaign over the pairs.

The parts any evaluation shares (the held-out source stickers, the key candidates are compared
on, and opening a campaign to every active rater) are public: experiments
(``training_bridge.experiments``) evaluate their arms with them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Campaign
from generation.models import (
    BatchKind,
    BatchStatus,
    Candidate,
    CandidateKind,
    ModelKind,
    ModelVersion,
    PromptSet,
)
from stickerloop.errors import ServiceConflict
from stickerloop.roles import Role
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.models import (
    EvaluationStatus,
    TrainingJob,
    TrainingJobEvaluation,
)

MAX_EVALUATION_SEEDS = 8
MAX_EVALUATION_SOURCES = 64
DEFAULT_EVALUATION_SEEDS = [0, 1]
DEFAULT_EVALUATION_SOURCES = 8
EVALUATION_OVERLAP = 3


def evaluation_sources_default(limit: int) -> list[Candidate]:
    """Stickers made from held-out prompts, newest prompt sets first: what animation models are
    evaluated on when no sources are named."""
    return list(
        Candidate.objects.filter(
            kind=CandidateKind.STICKER, prompt__prompt_set__is_held_out=True
        ).order_by("-prompt__prompt_set__created_at", "prompt__position", "id")[:limit]
    )


def evaluation_prompt_set_default() -> PromptSet | None:
    """The newest held-out prompt set: what an image model is evaluated on when its job names
    none. The job form shows it before a job starts."""
    return PromptSet.objects.filter(is_held_out=True).order_by("-created_at", "-id").first()


def _evaluation_inputs(job: TrainingJob, version: ModelVersion) -> tuple[dict | None, str]:
    """What the evaluation batch generates from: a held-out prompt set for an image model,
    source stickers for an animation model, with the batch kind. (None, why) when there is
    nothing to evaluate on."""
    if version.kind == ModelKind.IMAGE:
        prompt_set = job.evaluation_prompt_set or evaluation_prompt_set_default()
        if prompt_set is None:
            return None, "No held-out prompt set to evaluate on."
        return {"kind": BatchKind.STICKER, "prompt_set": prompt_set}, ""
    sources = list(job.evaluation_sources.all()) or evaluation_sources_default(
        DEFAULT_EVALUATION_SOURCES
    )
    if not sources:
        return None, "No source stickers of held-out prompts to animate."
    return {"kind": BatchKind.ANIMATION, "sources": sources}, ""


def training_job_evaluation_start(job: TrainingJob, version: ModelVersion) -> TrainingJobEvaluation:
    """Ask for candidates from the new model and its parent (same prompts or sources, same
    seeds). A batch the generation service refuses marks the evaluation FAILED with its reason;
    it never undoes the registration (it runs in a savepoint)."""
    from generation.services.batches import generation_batch_create

    evaluation = TrainingJobEvaluation(job=job)
    parent = job.base_model_version
    name = f"Evaluation of job {job.pk}: {version.name} vs {parent.name}"
    seeds = job.evaluation_seeds or DEFAULT_EVALUATION_SEEDS
    try:
        with transaction.atomic():
            inputs, missing = _evaluation_inputs(job, version)
            if inputs is None:
                evaluation.status = EvaluationStatus.SKIPPED
                evaluation.error = missing
            else:
                evaluation.batch = generation_batch_create(
                    **inputs,
                    model_versions=[version, parent],
                    seeds=seeds,
                    params={},
                    name=name,
                    requested_by=job.requested_by,
                )
    except ValidationError as exc:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    evaluation.save()
    if evaluation.status == EvaluationStatus.GENERATING:
        transaction.on_commit(
            lambda: job_tasks.evaluation_advance.apply_async(
                (evaluation.pk,), countdown=job_tasks.EVALUATION_POLL_SECONDS
            )
        )
    return evaluation


def evaluation_key(candidate: Candidate) -> tuple[int, int]:
    """What two candidates must share to be compared: the prompt's position in its set (or the
    source sticker) and the seed. Position rather than prompt id, so that a copy of a prompt set
    (the same prompts in the same order) lines up with the original. Assumes ``prompt`` is
    selected with the candidate for stickers."""
    if candidate.kind == CandidateKind.ANIMATION:
        return (candidate.source_id, candidate.seed)
    return (candidate.prompt.position, candidate.seed)


def _pairs(
    evaluation: TrainingJobEvaluation, version_id: int, parent_id: int
) -> list[list[Candidate]]:
    """[new, parent] candidates made from the same prompt (or source sticker) and seed."""
    by_key: dict[tuple[int, int], dict[int, Candidate]] = {}
    for candidate in (
        Candidate.objects.filter(batch=evaluation.batch).select_related("prompt").order_by("id")
    ):
        by_key.setdefault(evaluation_key(candidate), {})[candidate.model_version_id] = candidate
    return [
        [found[version_id], found[parent_id]]
        for _, found in sorted(by_key.items())
        if version_id in found and parent_id in found
    ]


def evaluation_raters() -> list[AbstractBaseUser]:
    """Every active rater: evaluation campaigns are open to all of them."""
    return list(
        get_user_model().objects.filter(is_active=True, groups__name=Role.RATER).order_by("pk")
    )


def evaluation_campaign_open(
    *,
    name: str,
    kind: str,
    groups: list[list[Candidate]],
    guidelines: str,
    seed: int,
    created_by: AbstractBaseUser | None,
    preset: str | None = None,
    question_schema: list | None = None,
    overlap: int = EVALUATION_OVERLAP,
) -> Campaign:
    """Create a campaign of ``groups`` (one item each, display order shuffled by ``seed``), open
    to every active rater, and start it. Raises ValidationError or ServiceConflict as the
    campaign services do; the caller runs it in a savepoint when it records the failure."""
    from annotation.services.campaigns import campaign_create, campaign_start
    from annotation.services.items import campaign_items_add

    campaign = campaign_create(
        name=name[:200],
        kind=kind,
        preset=preset,
        question_schema=question_schema,
        guidelines=guidelines,
        overlap=overlap,
        raters=evaluation_raters(),
        created_by=created_by,
    )
    campaign_items_add(campaign=campaign, candidate_groups=groups, seed=seed)
    return campaign_start(campaign=campaign)


@transaction.atomic
def training_job_evaluation_advance(*, evaluation_id: int) -> bool:
    """Open the pair campaign once the evaluation batch has finished; True when nothing is
    left to wait for (open, failed, skipped), False while the batch is still generating.

    The campaign pairs each new-model candidate with the parent's candidate of the same prompt
    (or source sticker) and seed, asks the pairwise questions (alignment, style, motion,
    overall) and is open to every active rater.
    """
    evaluation = (
        TrainingJobEvaluation.objects.select_for_update(of=("self",))
        .select_related("job__output_model_version", "job__base_model_version", "batch")
        .filter(pk=evaluation_id)
        .first()
    )
    if evaluation is None or evaluation.status != EvaluationStatus.GENERATING:
        return True
    batch = evaluation.batch
    if batch is None:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = "The evaluation batch was deleted."
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    if not batch.is_finished:
        return False
    job = evaluation.job
    version, parent = job.output_model_version, job.base_model_version
    groups = (
        _pairs(evaluation, version.pk, parent.pk) if batch.status != BatchStatus.CANCELLED else []
    )
    if not groups:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = (
            f"Evaluation batch {batch.pk} ended {batch.status} with no pair of "
            f"candidates to compare. {batch.error}".strip()
        )
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    guidelines = (
        f"Compare **{version.name}** (trained by job {job.pk}, {job.get_recipe_display()}) with "
        f"its parent **{parent.name}**: same prompt or source sticker, same seed. Which side is "
        f"better for each question? Ties are fine."
    )
    try:
        with transaction.atomic():
            campaign = evaluation_campaign_open(
                name=f"Evaluation: {version.name} vs {parent.name}",
                kind="pair",
                preset="pairwise",
                groups=groups,
                guidelines=guidelines,
                seed=job.pk,
                created_by=job.requested_by,
            )
    except (ValidationError, ServiceConflict) as exc:
        evaluation.status = EvaluationStatus.FAILED
        evaluation.error = f"The pair campaign could not open: {exc}"
        evaluation.save(update_fields=["status", "error", "updated_at"])
        return True
    evaluation.status = EvaluationStatus.OPEN
    evaluation.campaign = campaign
    evaluation.pairs = len(groups)
    evaluation.save(update_fields=["status", "campaign", "pairs", "updated_at"])
    return True
