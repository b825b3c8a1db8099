"""Experiments: create one (its arms, and a generation batch per arm on identical inputs), then
open its campaigns once every arm has generated.

A template arm (the prompt-engineered base) generates from the experiment's own prompt set
through a template prompt enhancer registered for it: the generation chunk applies the template
and stores the enhanced prompt on each candidate beside the raw one, which raters judge against.
Every other arm generates with no enhancer, whatever its prompt set names, so the arms differ in
their model or their template only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from generation.models import (
    Candidate,
    CandidateKind,
    EnhancerKind,
    ModelKind,
    ModelVersion,
    PromptEnhancer,
    PromptSet,
)
from generation.pipelines.enhancers import check_template
from stickerloop.errors import ServiceConflict
from training_bridge.experiments import questions
from training_bridge.experiments import tasks as experiment_tasks
from training_bridge.experiments.models import Experiment, ExperimentArm, ExperimentStatus
from training_bridge.experiments.selectors import experiment_arms, experiment_candidates
from training_bridge.jobs.evaluation import (
    DEFAULT_EVALUATION_SOURCES,
    EVALUATION_OVERLAP,
    MAX_EVALUATION_SEEDS,
    MAX_EVALUATION_SOURCES,
    evaluation_campaign_open,
    evaluation_sources_default,
)

MIN_ARMS, MAX_ARMS = 2, 8
MAX_PROMPTS = 200
MIN_IMAGE_SEEDS = 2
MAX_SEED = 2**32 - 1
MAX_OVERLAP = 10
MAX_LABEL_CHARS = 100


@dataclass(frozen=True)
class ArmSpec:
    """One arm as asked for: a model version, and for the prompt-engineered base a template."""

    model_version: ModelVersion
    template: str = ""
    label: str = ""
    is_base: bool = False


def _check_arms(arms: list[ArmSpec]) -> tuple[str | None, list[str], dict[str, list[str]]]:
    """The arms' common kind (None when they differ), each arm's label, and the errors."""
    errors: dict[str, list[str]] = {}
    if not MIN_ARMS <= len(arms) <= MAX_ARMS:
        errors["arms"] = [f"An experiment compares {MIN_ARMS} to {MAX_ARMS} arms, not {len(arms)}."]
        return None, [], errors
    by_kind: dict[str, list[str]] = {}
    for arm in arms:
        by_kind.setdefault(arm.model_version.kind, []).append(arm.model_version.name)
    kind = next(iter(by_kind)) if len(by_kind) == 1 else None
    if kind is None:
        errors["arms"] = [
            "Every arm must be of one kind; "
            + "; ".join(f"{k}: {', '.join(names)}" for k, names in sorted(by_kind.items()))
            + "."
        ]
    bases = sum(1 for arm in arms if arm.is_base)
    if bases > 1:
        errors.setdefault("arms", []).append(f"Mark one arm as the base, not {bases}.")
    labels: list[str] = []
    seen: dict[tuple[int, str], int] = {}
    for index, arm in enumerate(arms):
        where = f"arms.{index}"
        if not arm.model_version.is_active:
            errors[f"{where}.model_version"] = [
                f"Model version {arm.model_version.name} is retired."
            ]
        if arm.template:
            try:
                check_template(arm.template)
            except ValueError as exc:
                errors[f"{where}.template"] = [str(exc)]
            if arm.model_version.kind == ModelKind.ANIMATION and f"{where}.template" not in errors:
                errors[f"{where}.template"] = [
                    "A template applies to image arms, whose models draw from a prompt."
                ]
        label = (arm.label or "").strip() or (
            f"{arm.model_version.name} + template" if arm.template else arm.model_version.name
        )
        identity = (arm.model_version.pk, arm.template)
        if identity in seen:
            errors[where] = [
                f"Arm {index + 1} repeats arm {seen[identity] + 1}: the same model version and "
                "template."
            ]
        elif len(label) > MAX_LABEL_CHARS:
            errors[f"{where}.label"] = [f"A label has at most {MAX_LABEL_CHARS} characters."]
        elif label in labels:
            errors[f"{where}.label"] = [
                f"Arm {labels.index(label) + 1} is labelled {label!r} already; give each arm "
                "its own label."
            ]
        seen.setdefault(identity, index)
        labels.append(label)
    return kind, labels, errors


def _check_seeds(seeds: object, kind: str | None) -> list[str]:
    if (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= MAX_EVALUATION_SEEDS
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds
        )
        or len(set(seeds)) != len(seeds)
    ):
        return [f"Give 1 to {MAX_EVALUATION_SEEDS} distinct integer seeds from 0 to {MAX_SEED}."]
    if kind == ModelKind.IMAGE and len(seeds) < MIN_IMAGE_SEEDS:
        return [
            f"Give at least {MIN_IMAGE_SEEDS} seeds: scene diversity compares the samples of "
            "one prompt."
        ]
    return []


def _check_inputs(
    *, kind: str | None, prompt_set: PromptSet | None, sources: list[Candidate]
) -> tuple[list[Candidate], dict[str, list[str]]]:
    """The source stickers an animation experiment animates (the given ones, or the held-out
    default), and the errors about what the arms generate from."""
    errors: dict[str, list[str]] = {}
    if kind == ModelKind.IMAGE:
        if sources:
            errors["sources"] = [
                "Image experiments generate from prompts (prompt_set), not source stickers."
            ]
        if prompt_set is None:
            errors["prompt_set"] = ["An image experiment needs a held-out prompt set."]
        elif not prompt_set.is_held_out:
            errors["prompt_set"] = [
                f"Prompt set {prompt_set.name!r} is not held out; experiments evaluate on "
                "held-out prompts only."
            ]
        else:
            count = prompt_set.prompts.count()
            if not count:
                errors["prompt_set"] = [f"Prompt set {prompt_set.name!r} is empty."]
            elif count > MAX_PROMPTS:
                errors["prompt_set"] = [
                    f"An experiment evaluates on at most {MAX_PROMPTS} prompts; "
                    f"{prompt_set.name!r} has {count}."
                ]
        return [], errors
    if kind != ModelKind.ANIMATION:
        return [], errors
    if prompt_set is not None:
        errors["prompt_set"] = [
            "Animation experiments animate source stickers (sources), not prompts."
        ]
    chosen = list(sources) or evaluation_sources_default(DEFAULT_EVALUATION_SOURCES)
    if not chosen:
        errors["sources"] = ["No sticker of a held-out prompt to animate: give sources."]
    elif len(chosen) > MAX_EVALUATION_SOURCES:
        errors["sources"] = [f"At most {MAX_EVALUATION_SOURCES} source stickers."]
    else:
        held_out = set(
            Candidate.objects.filter(
                pk__in=[c.pk for c in chosen],
                kind=CandidateKind.STICKER,
                prompt__prompt_set__is_held_out=True,
            ).values_list("pk", flat=True)
        )
        outside = [c.pk for c in chosen if c.pk not in held_out]
        if outside:
            errors["sources"] = [
                f"Candidate(s) {', '.join(map(str, outside))} are not stickers of held-out prompts."
            ]
    return chosen, errors


def _arm_enhancer(*, experiment: Experiment, arm: ExperimentArm, created_by) -> PromptEnhancer:
    """The template enhancer of ``arm``, registered under the experiment's and arm's numbers (a
    stored row, never edited: the arm's batch names it)."""
    from generation.services.enhancers import prompt_enhancer_create

    return prompt_enhancer_create(
        name=f"experiment-{experiment.pk}-arm-{arm.position}",
        kind=EnhancerKind.TEMPLATE,
        template=arm.template,
        description=f"The template of arm {arm.label!r} of experiment {experiment.pk}.",
        created_by=created_by,
    )


def _arm_batch_create(
    *,
    experiment: Experiment,
    arm: ExperimentArm,
    sources: list[Candidate],
    created_by: AbstractBaseUser | None,
):
    from generation.services.batches import generation_batch_create

    enhancer = (
        _arm_enhancer(experiment=experiment, arm=arm, created_by=created_by)
        if arm.template
        else None
    )
    inputs = (
        {"kind": "sticker", "prompt_set": arm.prompt_set, "enhancer": enhancer}
        if experiment.kind == ModelKind.IMAGE
        else {"kind": "animation", "sources": sources}
    )
    try:
        return generation_batch_create(
            **inputs,
            model_versions=[arm.model_version],
            seeds=experiment.seeds,
            params={},
            name=f"Experiment {experiment.pk}: {arm.label}"[:200],
            requested_by=created_by,
        )
    except ValidationError as exc:
        # The batch service names its own fields; the model version is this arm's.
        raise ValidationError(
            {
                f"arms.{arm.position}.model_version" if key == "model_versions" else key: messages
                for key, messages in exc.message_dict.items()
            }
        ) from exc


@transaction.atomic
def experiment_create(
    *,
    name: str,
    arms: list[ArmSpec],
    seeds: list[int],
    prompt_set: PromptSet | None = None,
    sources: list[Candidate] | None = None,
    description: str = "",
    overlap: int = EVALUATION_OVERLAP,
    created_by: AbstractBaseUser | None = None,
) -> Experiment:
    """Store an experiment and its arms and ask every arm for candidates on the same held-out
    prompts (image) or source stickers (animation) and seeds; its campaigns open once every
    batch has ended (``experiment_advance``, polled after commit).

    The kind is the arms' kind. Refused with a ValidationError naming the field, storing
    nothing: fewer than two arms or more than eight, arms of different kinds, two bases, a
    template without ``{prompt}``, a prompt set that is not held out, sources that are not
    stickers of held-out prompts, seeds out of range.
    """
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["An experiment needs a name."]
    elif len(name) > 200:
        errors["name"] = ["A name has at most 200 characters."]
    elif Experiment.objects.filter(name=name).exists():
        errors["name"] = [f"An experiment named {name!r} exists already."]
    kind, labels, arm_errors = _check_arms(arms)
    errors.update(arm_errors)
    if problems := _check_seeds(seeds, kind):
        errors["seeds"] = problems
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
        errors["overlap"] = [f"Must be an integer from 1 to {MAX_OVERLAP}, not {overlap!r}."]
    chosen, input_errors = _check_inputs(kind=kind, prompt_set=prompt_set, sources=sources or [])
    errors.update(input_errors)
    if errors:
        raise ValidationError(errors)
    experiment = Experiment(
        name=name,
        description=description,
        kind=kind,
        prompt_set=prompt_set if kind == ModelKind.IMAGE else None,
        seeds=list(seeds),
        overlap=overlap,
        created_by=created_by,
    )
    experiment.full_clean()
    experiment.save()
    if chosen:
        experiment.sources.set(chosen)
    base_index = next((i for i, arm in enumerate(arms) if arm.is_base), 0)
    for index, (spec, label) in enumerate(zip(arms, labels, strict=True)):
        arm = ExperimentArm.objects.create(
            experiment=experiment,
            position=index,
            label=label,
            model_version=spec.model_version,
            template=spec.template or "",
            is_base=index == base_index,
        )
        if kind == ModelKind.IMAGE:
            arm.prompt_set = prompt_set
        arm.batch = _arm_batch_create(
            experiment=experiment, arm=arm, sources=chosen, created_by=created_by
        )
        arm.save(update_fields=["prompt_set", "batch"])
    experiment_tasks.advance.apply_async_on_commit(
        (experiment.pk,), countdown=experiment_tasks.ADVANCE_POLL_SECONDS
    )
    return experiment


def _fail(experiment: Experiment, error: str) -> bool:
    experiment.status = ExperimentStatus.FAILED
    experiment.error = error
    experiment.save(update_fields=["status", "error", "updated_at"])
    return True


@transaction.atomic
def experiment_advance(*, experiment_id: int) -> bool:
    """Open the experiment's campaigns once every arm's batch has ended; True when nothing is
    left to wait for (rating or failed), False while a batch is still generating.

    Only the prompts (or sources) and seeds with a candidate from every arm are rated: the
    rating campaign shows each of those candidates alone, the pair campaign each arm's
    candidate beside the base arm's of the same key. Both are open to every active rater. The
    platform's measurements (diversity, latency) are computed at once.
    """
    from training_bridge.experiments.services.results import experiment_results_compute

    experiment = Experiment.objects.select_for_update().filter(pk=experiment_id).first()
    if experiment is None or experiment.status != ExperimentStatus.GENERATING:
        return True
    arms = experiment_arms(experiment)
    missing = [arm.label for arm in arms if arm.batch is None]
    if missing:
        return _fail(experiment, f"The batch of arm(s) {', '.join(missing)} was deleted.")
    if not all(arm.batch.is_finished for arm in arms):
        return False
    by_arm, keys = experiment_candidates(arms=arms)
    if not keys:
        ended = "; ".join(
            f"batch {arm.batch_id} ({arm.label}) ended {arm.batch.status}"
            + (f": {arm.batch.error}" if arm.batch.error else "")
            for arm in arms
        )
        return _fail(
            experiment, f"No prompt (or source) and seed has a candidate from every arm: {ended}."
        )
    base = next(arm for arm in arms if arm.is_base)
    rating_groups = [[by_arm[arm.pk][key]] for arm in arms for key in keys]
    pair_groups = [
        [by_arm[arm.pk][key], by_arm[base.pk][key]]
        for arm in arms
        if arm.pk != base.pk
        for key in keys
    ]
    try:
        with transaction.atomic():
            experiment.rating_campaign = evaluation_campaign_open(
                name=f"Experiment {experiment.pk}: {experiment.name} · ratings",
                kind="single",
                question_schema=questions.RATING_QUESTIONS[experiment.kind],
                groups=rating_groups,
                guidelines=questions.RATING_GUIDELINES[experiment.kind],
                seed=experiment.pk,
                overlap=experiment.overlap,
                created_by=experiment.created_by,
            )
            experiment.pair_campaign = evaluation_campaign_open(
                name=f"Experiment {experiment.pk}: {experiment.name} · pairs",
                kind="pair",
                preset="pairwise",
                groups=pair_groups,
                guidelines=questions.PAIR_GUIDELINES,
                seed=experiment.pk,
                overlap=experiment.overlap,
                created_by=experiment.created_by,
            )
    except (ValidationError, ServiceConflict) as exc:
        return _fail(experiment, f"The campaigns could not open: {exc}")
    experiment.status = ExperimentStatus.RATING
    experiment.save(update_fields=["status", "rating_campaign", "pair_campaign", "updated_at"])
    experiment_results_compute(experiment=experiment)
    return True
