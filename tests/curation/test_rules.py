"""Rule input checked against the campaigns' question schemas: 400 naming the field, nothing
stored."""

import pytest

from training_bridge.models import DatasetRule

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaigns(make):
    return {
        "align": make.campaign(name="align"),
        "pair": make.campaign(
            kind="pair",
            name="pair",
            schema=[
                {
                    "key": "overall",
                    "type": "single_choice",
                    "label": "Better?",
                    "options": [
                        {"value": "left", "label": "Left", "shortcut": "1"},
                        {"value": "right", "label": "Right", "shortcut": "3"},
                    ],
                },
            ],
        ),
        "style": make.campaign(
            name="style",
            schema=[
                {"key": "quality", "type": "likert", "label": "Quality"},
                {"key": "note", "type": "text", "label": "Note", "required": False},
            ],
        ),
    }


def payload(sources, **changes):
    data = {
        "name": "rule",
        "purpose": "alignment",
        "campaigns": [sources["align"].pk],
        "conditions": [{"question": "aligned", "labels": [True], "min_confidence": 0.8}],
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"conditions": [{"question": "alignment", "labels": [True]}]},
            {
                "conditions.0.question": [
                    "Question 'alignment' is not in campaign 'align' (questions: aligned, quality)."
                ]
            },
        ),
        (
            {"conditions": [{"question": "aligned", "min_confidence": 1.5}]},
            {"conditions.0.min_confidence": ["Must be a number between 0 and 1, not 1.5."]},
        ),
        (
            {"conditions": [{"question": "quality", "min_mean": 6}]},
            {"conditions.0.min_mean": ["Must be within question 'quality''s range 1–5, not 6."]},
        ),
        (
            {"conditions": [{"question": "quality", "min_mean": 4, "max_mean": 3}]},
            {"conditions.0.max_mean": ["Must be at least min_mean (4), not 3."]},
        ),
        (
            {"conditions": [{"question": "aligned", "min_mean": 3}]},
            {
                "conditions.0.min_mean": [
                    "Question 'aligned' is a binary question; min_mean needs a likert question."
                ]
            },
        ),
        (
            {"conditions": [{"question": "aligned", "labels": ["yes"]}]},
            {
                "conditions.0.labels": [
                    "'yes' is not an answer of question 'aligned' (answers: true, false)."
                ]
            },
        ),
        (
            {"conditions": [{"question": "quality", "labels": [True]}]},
            {
                "conditions.0.labels": [
                    "true is not an answer of question 'quality' (answers: 1, 2, 3, 4, 5)."
                ]
            },
        ),
        (
            {"conditions": [{"question": "aligned"}]},
            {
                "conditions.0": [
                    "Give at least one of labels, min_confidence, min_mean or max_mean (or "
                    "min_agreement, to keep the candidates a pick question picked)."
                ]
            },
        ),
        ({"conditions": []}, {"conditions": ["An alignment rule needs at least one condition."]}),
        ({"campaigns": []}, {"campaigns": ["Choose at least one source campaign."]}),
        (
            {"consensus_method": "mean"},
            {
                "consensus_method": [
                    "Method 'mean' does not fit question 'aligned' (binary); methods that fit: "
                    "majority, dawid_skene, glad, mace."
                ]
            },
        ),
        (
            {"consensus_method": "vibes"},
            {
                "consensus_method": [
                    "Unknown consensus method 'vibes'; use one of majority, mean, median, "
                    "dawid_skene, glad, mace."
                ]
            },
        ),
        (
            {"kind": "animation"},
            {"kind": ["An alignment rule takes image datasets, not animation."]},
        ),
        (
            {"min_motion_score": 0.2},
            {"min_motion_score": ["Only animation datasets have motion scores."]},
        ),
        (
            {"validation_fraction": 0.9},
            {"validation_fraction": ["Must be between 0 and 0.5, not 0.9."]},
        ),
        (
            {"dedup_max_distance": 40},
            {"dedup_max_distance": ["Must be between 0 and 16 bits, not 40."]},
        ),
        ({"per_prompt_cap": 0}, {"per_prompt_cap": ["Must be at least 1, not 0."]}),
        (
            {"caption_source": "template", "caption_template": "a {subject} sticker"},
            {
                "caption_template": [
                    "Unknown placeholder {subject}: use {prompt}, {enhanced_prompt}, "
                    "{motion_prompt}."
                ]
            },
        ),
        (
            {"caption_source": "template"},
            {"caption_template": ["A template caption needs a template."]},
        ),
        (
            {"weak_label_filters": {"tag": ["cat"]}},
            {"weak_label_filters": ["Only weak rules filter by weak labels."]},
        ),
        (
            {
                "training_trigger": {
                    "recipe": "finetune",
                    "base_model_version_id": 999999,
                    "role": "train",
                }
            },
            {"training_trigger.base_model_version_id": ["No model version 999999."]},
        ),
    ],
)
def test_bad_rules_are_400_and_store_nothing(api, curator, campaigns, change, expected):
    response = api(curator).post(
        "/api/dataset-rules/create/", payload(campaigns, **change), format="json"
    )
    assert response.status_code == 400
    assert response.json() == expected
    assert DatasetRule.objects.count() == 0


def test_pair_campaigns_and_text_questions_are_refused(api, curator, campaigns):
    client = api(curator)
    response = client.post(
        "/api/dataset-rules/create/",
        payload(
            campaigns,
            campaigns=[campaigns["pair"].pk],
            conditions=[{"question": "overall", "labels": ["left"]}],
        ),
        format="json",
    )
    assert response.json() == {
        "campaigns": [
            "Campaign 'pair' is a pair campaign; datasets take single-candidate or best-of-N "
            "campaigns, and pair campaigns through pick conditions (min_agreement) only."
        ]
    }
    response = client.post(
        "/api/dataset-rules/create/",
        payload(
            campaigns,
            purpose="style",
            campaigns=[campaigns["style"].pk],
            conditions=[{"question": "note", "labels": ["x"]}],
        ),
        format="json",
    )
    assert response.json() == {
        "conditions.0.question": [
            "Question 'note' of campaign 'style' is a text question; conditions take binary, "
            "single_choice, likert questions."
        ]
    }
    assert DatasetRule.objects.count() == 0


def test_a_question_must_be_in_every_source_campaign(api, curator, campaigns):
    response = api(curator).post(
        "/api/dataset-rules/create/",
        payload(
            campaigns,
            purpose="style",
            campaigns=[campaigns["align"].pk, campaigns["style"].pk],
            conditions=[{"question": "aligned", "labels": [True]}],
        ),
        format="json",
    )
    assert response.json() == {
        "conditions.0.question": [
            "Question 'aligned' is not in campaign 'style' (questions: quality, note)."
        ]
    }


def test_update_checks_the_merged_settings(api, curator, campaigns):
    client = api(curator)
    rule = client.post("/api/dataset-rules/create/", payload(campaigns), format="json").json()
    bad = client.post(
        f"/api/dataset-rules/{rule['id']}/update/",
        {"conditions": [{"question": "quality", "min_mean": 0}]},
        format="json",
    )
    assert bad.json() == {
        "conditions.0.min_mean": ["Must be within question 'quality''s range 1–5, not 0."]
    }
    good = client.post(
        f"/api/dataset-rules/{rule['id']}/update/",
        {"per_prompt_cap": 3, "name": "renamed"},
        format="json",
    )
    assert good.status_code == 200
    assert (good.json()["per_prompt_cap"], good.json()["name"]) == (3, "renamed")
    assert good.json()["conditions"] == rule["conditions"]
    duplicate = client.post(
        "/api/dataset-rules/create/", payload(campaigns, name="renamed"), format="json"
    )
    assert duplicate.json() == {"name": ["A rule named 'renamed' exists already."]}
