"""Creating experiments, their refusals, and opening their campaigns once every arm has
generated."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Campaign, Item
from generation.models import Candidate, GenerationBatch, PromptEnhancer, PromptSet
from generation.services.batches import generation_batch_plan
from generation.services.chunks import generation_chunk_run
from tests import factories
from tests.experiments.conftest import RED, finish_batches, flat, item_keys, store_candidate
from training_bridge.experiments.models import (
    Axis,
    Experiment,
    ExperimentArm,
    ExperimentScore,
    ExperimentStatus,
)
from training_bridge.experiments.services.experiments import (
    ArmSpec,
    experiment_advance,
    experiment_create,
)

pytestmark = pytest.mark.django_db

TEMPLATE = "a sticker of {prompt}, thick white outline"


def _counts() -> tuple[int, ...]:
    return (
        Experiment.objects.count(),
        ExperimentArm.objects.count(),
        PromptSet.objects.count(),
        PromptEnhancer.objects.count(),
        GenerationBatch.objects.count(),
    )


def test_an_image_experiment_generates_every_arm_on_the_same_prompts_and_seeds(
    models, engineer, rater, one_torch_thread, django_capture_on_commit_callbacks
):
    held_out = factories.prompt_set(["a waving cat", "a tiny cactus"], held_out=True)
    base = models["sticker-base"]
    tuned = factories.Factory().model("sticker-tuned")
    tuned.uri, tuned.default_params = base.uri, base.default_params
    tuned.save()
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        experiment = experiment_create(
            name="prompt engineering",
            arms=[
                ArmSpec(model_version=base, template=TEMPLATE, is_base=True),
                ArmSpec(model_version=tuned),
            ],
            prompt_set=held_out,
            seeds=[3, 4],
            created_by=engineer,
        )
    # then: one batch per arm, same prompts and seeds; the template arm's batch applies it
    assert (experiment.kind, experiment.status, experiment.seeds) == ("image", "generating", [3, 4])
    template_arm, plain_arm = experiment.arms.order_by("position")
    assert (template_arm.label, template_arm.is_base, plain_arm.label, plain_arm.is_base) == (
        "sticker-base + template",
        True,
        "sticker-tuned",
        False,
    )
    assert template_arm.prompt_set == plain_arm.prompt_set == held_out
    enhancer = template_arm.batch.enhancer
    assert (enhancer.name, enhancer.kind, enhancer.template, enhancer.style_phrases) == (
        f"experiment-{experiment.pk}-arm-0",
        "template",
        TEMPLATE,
        [],
    )
    assert plain_arm.batch.enhancer is None
    for arm in (template_arm, plain_arm):
        batch = arm.batch
        assert (batch.kind, batch.prompt_set, batch.seeds, batch.total) == (
            "sticker",
            held_out,
            [3, 4],
            4,
        )
        assert list(batch.model_versions.all()) == [arm.model_version]
    assert len(callbacks) == 3  # each batch's planning, and the experiment's first look
    assert experiment_advance(experiment_id=experiment.pk) is False
    for arm in (template_arm, plain_arm):
        generation_batch_plan(batch_id=arm.batch_id)
        for chunk in arm.batch.chunks.all():
            generation_chunk_run(chunk_id=chunk.pk)
    templated = Candidate.objects.filter(batch=template_arm.batch).order_by("prompt__position")
    assert {(c.raw_prompt, c.enhanced_prompt) for c in templated} == {
        ("a waving cat", "a sticker of a waving cat, thick white outline"),
        ("a tiny cactus", "a sticker of a tiny cactus, thick white outline"),
    }
    assert set(
        Candidate.objects.filter(batch=plain_arm.batch).values_list("raw_prompt", "enhanced_prompt")
    ) == {("a waving cat", ""), ("a tiny cactus", "")}
    # when every batch has ended
    assert experiment_advance(experiment_id=experiment.pk) is True
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RATING
    rating, pairs = experiment.rating_campaign, experiment.pair_campaign
    assert (rating.kind, rating.status, rating.overlap) == ("single", "running", 3)
    assert [q["key"] for q in rating.question_schema] == ["aligned", "style_pass"]
    assert (pairs.kind, pairs.preset, pairs.status) == ("pair", "pairwise", "running")
    assert list(rating.memberships.values_list("rater", flat=True)) == [rater.pk]
    assert sorted(map(tuple, item_keys(rating).values())) == sorted(
        ((label, (p, s)),)
        for label in ("sticker-base + template", "sticker-tuned")
        for p in (0, 1)
        for s in (3, 4)
    )
    for shown in item_keys(pairs).values():
        assert sorted(label for label, _ in shown) == ["sticker-base + template", "sticker-tuned"]
        assert shown[0][1] == shown[1][1]
    assert Item.objects.filter(campaign=pairs).count() == 4
    # the platform's measurements are there at once; the raters' come with judgments
    assert sorted(ExperimentScore.objects.values_list("arm__label", "axis", "source", "n")) == [
        ("sticker-base + template", Axis.DIVERSITY, "platform", 2),
        ("sticker-base + template", Axis.LATENCY_MS, "platform", 4),
        ("sticker-tuned", Axis.DIVERSITY, "platform", 2),
        ("sticker-tuned", Axis.LATENCY_MS, "platform", 4),
    ]


def test_an_input_one_arm_failed_to_make_is_dropped_for_every_arm(image_experiment):
    # given: sticker-b has no candidate for the third prompt with seed 1
    experiment = image_experiment(
        lambda label, key: (flat(RED), 10.0), skip={("sticker-b", (2, 1))}
    )
    # then
    rated = item_keys(experiment.rating_campaign).values()
    assert sorted(key for [(_, key)] in rated) == sorted(
        [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)] * 2
    )
    assert Item.objects.filter(campaign=experiment.pair_campaign).count() == 5
    assert list(
        ExperimentScore.objects.filter(axis=Axis.LATENCY_MS).values_list("arm__label", "n")
    ) == [("sticker-a + template", 5), ("sticker-b", 5)]


def test_an_animation_experiment_animates_held_out_stickers(engineer):
    held_out = factories.prompt_set(["a waving cat"], held_out=True)
    sticker_model = factories.model_version("sticker-base")
    source = factories.sticker_candidate(sticker_model, held_out.prompts.get(), seed=0, index=0)
    teacher = factories.model_version("teacher-a", kind="animation")
    student = factories.model_version("student", kind="animation")
    experiment = experiment_create(
        name="student vs teacher",
        arms=[ArmSpec(model_version=student, is_base=True), ArmSpec(model_version=teacher)],
        sources=[source],
        seeds=[0],
        created_by=engineer,
    )
    assert (experiment.kind, experiment.prompt_set, list(experiment.sources.all())) == (
        "animation",
        None,
        [source],
    )
    for arm in experiment.arms.all():
        assert (arm.prompt_set, arm.batch.kind, list(arm.batch.sources.all())) == (
            None,
            "animation",
            [source],
        )
    for arm in experiment.arms.select_related("batch", "model_version"):
        store_candidate(arm, key=(source.pk, 0), image=flat(RED), inference_ms=80.0)
    finish_batches(experiment)
    assert experiment_advance(experiment_id=experiment.pk) is True
    experiment.refresh_from_db()
    assert [q["key"] for q in experiment.rating_campaign.question_schema] == [
        "motion_pass",
        "subject_consistent",
    ]
    assert sorted(ExperimentScore.objects.values_list("arm__label", "axis", "value")) == [
        ("student", Axis.LATENCY_MS, 80.0),
        ("teacher-a", Axis.LATENCY_MS, 80.0),
    ]


def test_failed_batches_fail_the_experiment_with_the_reason(engineer):
    experiment = experiment_create(
        name="nothing made",
        arms=[
            ArmSpec(model_version=factories.model_version("m1")),
            ArmSpec(model_version=factories.model_version("m2")),
        ],
        prompt_set=factories.prompt_set(["a cat"], held_out=True),
        seeds=[0, 1],
        created_by=engineer,
    )
    arms = list(experiment.arms.order_by("position"))
    GenerationBatch.objects.filter(pk__in=[a.batch_id for a in arms]).update(
        status="failed", error="chunk 0: no such folder"
    )
    assert experiment_advance(experiment_id=experiment.pk) is True
    experiment.refresh_from_db()
    assert (experiment.status, experiment.error) == (
        ExperimentStatus.FAILED,
        "No prompt (or source) and seed has a candidate from every arm: "
        f"batch {arms[0].batch_id} (m1) ended failed: chunk 0: no such folder; "
        f"batch {arms[1].batch_id} (m2) ended failed: chunk 0: no such folder.",
    )
    assert not Campaign.objects.exists()


def _arms(*names, kind="image", **first):
    return [
        ArmSpec(model_version=factories.model_version(n, kind=kind), **(first if i == 0 else {}))
        for i, n in enumerate(names)
    ]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "one arm",
            {"arms": ["An experiment compares 2 to 8 arms, not 1."]},
        ),
        (
            "mixed kinds",
            {"arms": ["Every arm must be of one kind; animation: anim-x; image: img-a."]},
        ),
        (
            "template without slot",
            {
                "arms.0.template": [
                    "`template` has to hold the slot {prompt}, where the prompt goes, but is "
                    "'a sticker, thick outline'."
                ]
            },
        ),
        (
            "not held out",
            {
                "prompt_set": [
                    "Prompt set 'open prompts' is not held out; experiments evaluate on "
                    "held-out prompts only."
                ]
            },
        ),
        (
            "two bases",
            {"arms": ["Mark one arm as the base, not 2."]},
        ),
        (
            "repeated arm",
            {"arms.1": ["Arm 2 repeats arm 1: the same model version and template."]},
        ),
        (
            "one seed",
            {
                "seeds": [
                    "Give at least 2 seeds: scene diversity compares the samples of one prompt."
                ]
            },
        ),
        (
            "template on animation",
            {
                "arms.0.template": [
                    "A template applies to image arms, whose models draw from a prompt."
                ],
                "sources": ["No sticker of a held-out prompt to animate: give sources."],
            },
        ),
    ],
)
def test_bad_experiments_are_refused_naming_the_field_and_store_nothing(
    case, expected, engineer, django_capture_on_commit_callbacks
):
    held_out = factories.prompt_set(["a cat", "a dog"], held_out=True)
    open_set = factories.prompt_set(["a cat"], name="open prompts")
    image = factories.model_version("img-a")
    values = {
        "one arm": {"arms": [ArmSpec(model_version=image)]},
        "mixed kinds": {
            "arms": [
                ArmSpec(model_version=image),
                ArmSpec(model_version=factories.model_version("anim-x", kind="animation")),
            ]
        },
        "template without slot": {
            "arms": [
                ArmSpec(model_version=image, template="a sticker, thick outline"),
                ArmSpec(model_version=factories.model_version("img-b")),
            ]
        },
        "not held out": {"prompt_set": open_set},
        "two bases": {
            "arms": [
                ArmSpec(model_version=image, is_base=True),
                ArmSpec(model_version=factories.model_version("img-b"), is_base=True),
            ]
        },
        "repeated arm": {"arms": [ArmSpec(model_version=image), ArmSpec(model_version=image)]},
        "one seed": {"seeds": [0]},
        "template on animation": {
            "arms": _arms("anim-a", "anim-b", kind="animation", template="{prompt}, waving"),
            "prompt_set": None,
        },
    }[case]
    arguments = {
        "name": "refused",
        "arms": [
            ArmSpec(model_version=image),
            ArmSpec(model_version=factories.model_version("img-b")),
        ],
        "prompt_set": held_out,
        "seeds": [0, 1],
        "created_by": engineer,
        **values,
    }
    before = _counts()
    # when
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as error:
        experiment_create(**arguments)
    # then
    assert error.value.message_dict == expected
    assert _counts() == before
    assert callbacks == []


def test_sources_that_are_not_held_out_stickers_are_refused(engineer):
    open_prompt = factories.prompt_set(["a cat"]).prompts.get()
    source = factories.sticker_candidate(
        factories.model_version("img"), open_prompt, seed=0, index=0
    )
    before = _counts()
    with pytest.raises(ValidationError) as error:
        experiment_create(
            name="refused",
            arms=_arms("anim-a", "anim-b", kind="animation"),
            sources=[source],
            seeds=[0],
            created_by=engineer,
        )
    assert error.value.message_dict == {
        "sources": [f"Candidate(s) {source.pk} are not stickers of held-out prompts."]
    }
    assert _counts() == before


def test_a_retired_model_version_is_refused_by_arm(engineer):
    retired = factories.model_version("retired")
    retired.is_active = False
    retired.save()
    held_out = factories.prompt_set(["a cat"], held_out=True)
    before = _counts()
    with pytest.raises(ValidationError) as error:
        experiment_create(
            name="refused",
            arms=[
                ArmSpec(model_version=factories.model_version("img")),
                ArmSpec(model_version=retired),
            ],
            prompt_set=held_out,
            seeds=[0, 1],
            created_by=engineer,
        )
    assert error.value.message_dict == {
        "arms.1.model_version": ["Model version retired is retired."]
    }
    assert _counts() == before


def test_a_refusal_of_the_generation_service_stores_nothing(models, engineer):
    """A prompt over the model's token limit: the batch service refuses the second arm's batch
    after the first arm, its template enhancer and its batch were written; all of it goes."""
    base = models["sticker-base"]
    tuned = factories.Factory().model("sticker-tuned")
    tuned.uri, tuned.max_prompt_tokens = base.uri, base.max_prompt_tokens
    tuned.save()
    base.max_prompt_tokens = None
    base.save()
    held_out = factories.prompt_set([" ".join(["cat"] * 200)], held_out=True)
    before = _counts()
    with pytest.raises(ValidationError) as error:
        experiment_create(
            name="refused",
            arms=[
                ArmSpec(model_version=base, template="{prompt}, sticker"),
                ArmSpec(model_version=tuned),
            ],
            prompt_set=held_out,
            seeds=[0, 1],
            created_by=engineer,
        )
    [(field, [message])] = error.value.message_dict.items()
    assert field == "prompt_set"
    assert message.startswith(
        f"1 prompt(s) exceed the {tuned.max_prompt_tokens}-token limit of sticker-tuned"
    )
    assert _counts() == before
