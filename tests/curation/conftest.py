import pytest

from tests.factories import MOTION_SCHEMA, Factory, aligned_rule
from training_bridge.rules import dataset_rule_create
from training_bridge.versions import dataset_version_build, dataset_version_publish

T = {"aligned": True, "quality": 4}
F = {"aligned": False, "quality": 2}
PROMPTS = ["a red cat", "a blue dog", "a green frog", "a pink bird", "a grey owl", "a tiny bee"]


@pytest.fixture
def make(db):
    return Factory()


@pytest.fixture
def sticker_version(make, curator):
    """A published alignment version of 12 stickers over 6 prompts, split train/validation,
    labelled by a yes/no question (aligned) and a rating (quality, with its mean)."""
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(3)]
    for index, prompt in enumerate(PROMPTS):
        for _ in range(2):
            item = make.item(campaign, [make.sticker(prompt, enhanced=f"{prompt}, sticker art")])
            for rater in raters:
                make.judge(item, rater, T if index % 5 or rater != raters[0] else F)
    rule = aligned_rule(
        campaign,
        curator,
        conditions=[
            {"question": "aligned", "labels": [True]},
            {"question": "quality", "min_mean": 1.0},
        ],
        validation_fraction=0.3,
        caption_source="enhanced_prompt",
    )
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    return dataset_version_publish(version=version, published_by=curator)


@pytest.fixture
def animation_version(make, curator):
    """A published teacher-selection version from a best-of-N campaign: 3 stickers animated by
    two teachers; raters pass some animations per candidate."""
    campaign = make.campaign(kind="best_of_n", schema=MOTION_SCHEMA, name="teachers")
    raters = [make.rater(f"m{i}", campaign) for i in range(3)]
    for index, prompt in enumerate(["a cat waving", "a dog jumping", "a cup steaming"]):
        source = make.sticker(prompt)
        a = make.animation(source, teacher="anim-teacher-a", seed=1)
        b = make.animation(source, teacher="anim-teacher-b", seed=2)
        item = make.item(campaign, [b, a])
        for rater in raters:
            make.judge(item, rater, {"motion_pass": {str(a.pk): True, str(b.pk): index == 1}})
    rule = dataset_rule_create(
        values={
            "name": "teachers",
            "purpose": "teacher_selection",
            "campaigns": [campaign],
            "conditions": [{"question": "motion_pass", "labels": [True], "min_confidence": 0.6}],
            "validation_fraction": 0.0,
            "caption_source": "motion_prompt",
            "min_motion_score": 0.0,
        },
        created_by=curator,
    )
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    return dataset_version_publish(version=version, published_by=curator)
