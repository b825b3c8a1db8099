"""Curation from picks: a best-of-N campaign's pick answers and a pair campaign's preferences,
rated through the annotation services, kept by a pick condition (min_agreement); the
teacher-selection version they make, its export with the teacher of every row, and the
distill_student recipe training on that export."""

import json
import re
import uuid

import pytest
from django.test import Client

from annotation.services.rating import item_next_for_rater, item_skip, judgment_submit
from tests import factories as f
from tests.conftest import logged_in
from training_bridge.exports.local_copy import dataset_version_local_copy
from training_bridge.models import DatasetEntry, DatasetRule
from training_bridge.rules import dataset_rule_create
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = pytest.mark.django_db

TEACHERS = ("anim-teacher-a", "anim-teacher-b", "anim-teacher-c")
PROMPTS = ("a cat waving", "a dog jumping", "a cup steaming", "a frog hopping", "a bee buzzing")
SKIP = "skip"
# What each of three raters picks as best, per source sticker (the teacher's letter, None for
# "none of them", SKIP to give the item back).
PICKS = {
    "a cat waving": ["a", "a", "b"],  # a, by 2 of 3
    "a dog jumping": ["b", "c", None],  # b and c tie at the top: neither kept
    "a cup steaming": ["c", "c", "c"],  # c, by 3 of 3
    "a frog hopping": ["b", "b", SKIP],  # b, by 2 of 2: the skip is not a judgment
    "a bee buzzing": ["a", None, None],  # a, by 1 of 3: "none" counts, below 0.6
}
PICK_RULE = {"question": "best", "min_agreement": 0.6, "min_judgments": 2}


def rate(campaign, raters, answer) -> None:
    """Every rater works through the queue as the rating screen does: lease one item, answer
    (by display position) or skip it, until none is left for them."""
    for index, rater in enumerate(raters):
        while leased := item_next_for_rater(campaign=campaign, rater=rater):
            [item] = leased
            answers = answer(index, item)
            if answers is None:
                item_skip(item=item, rater=rater, reason="cannot tell", client_id=uuid.uuid4())
            else:
                judgment_submit(
                    item=item,
                    rater=rater,
                    answers=answers,
                    client_id=uuid.uuid4(),
                    seconds_on_item=3.0,
                )


@pytest.fixture
def teachers(make):
    """A best-of-N campaign (the teacher-selection preset) of five stickers, each animated by
    three teachers, judged by three raters through the services as PICKS says. Returns the
    campaign and the animations by (prompt, teacher letter)."""
    animations, groups = {}, []
    for prompt in PROMPTS:
        source = make.sticker(prompt)
        group = []
        for seed, teacher in enumerate(TEACHERS, start=1):
            animation = make.animation(source, teacher=teacher, seed=seed)
            animations[(prompt, teacher[-1])] = animation
            group.append(animation)
        groups.append(group)
    raters = [make.rater(f"picker{i}") for i in range(3)]
    campaign = f.running_campaign(
        raters=raters,
        kind="best_of_n",
        preset="teacher_selection",
        overlap=3,
        groups=groups,
        name="teachers",
    )
    letter = {a.pk: key[1] for key, a in animations.items()}

    def answer(rater_index, item):
        shown = item.candidate_ids_in_order()
        prompt = PROMPTS[[animations[(p, "a")].pk in shown for p in PROMPTS].index(True)]
        choice = PICKS[prompt][rater_index]
        if choice == SKIP:
            return None
        answers = {"motion_pass": {str(p): True for p in range(len(shown))}}
        if choice is not None:
            answers["best"] = [letter[c] for c in shown].index(choice)
        return answers

    rate(campaign, raters, answer)
    return campaign, animations


def pick_rule(campaign, curator, **changes):
    return dataset_rule_create(
        values={
            "name": "picked teachers",
            "purpose": "teacher_selection",
            "campaigns": [campaign],
            "conditions": [PICK_RULE],
            "validation_fraction": 0.0,
            "caption_source": "motion_prompt",
            **changes,
        },
        created_by=curator,
    )


def test_best_of_n_picks_build_a_teacher_selection_version_with_its_teachers(
    teachers, curator, api
):
    campaign, animations = teachers
    rule = pick_rule(campaign, curator)
    assert rule.conditions == [PICK_RULE]
    # when
    version, created = dataset_version_build(rule=rule, built_by=curator)
    # then: the picked animation of the cat, the cup and the frog, with its teacher
    assert created
    entries = DatasetEntry.objects.filter(version=version).order_by("candidate_id")
    assert [
        (
            e.candidate_id,
            e.teacher,
            e.model_version_name,
            e.label,
            e.confidence,
            e.labels,
            e.confidences,
            e.n_judgments,
            e.source_candidate_id,
            e.split,
        )
        for e in entries
    ] == sorted(
        [
            (
                animations[("a cat waving", "a")].pk,
                "anim-teacher-a",
                "anim-teacher-a",
                True,
                0.666667,
                {"best": True},
                {"best": 0.666667},
                3,
                animations[("a cat waving", "a")].source_id,
                "train",
            ),
            (
                animations[("a cup steaming", "c")].pk,
                "anim-teacher-c",
                "anim-teacher-c",
                True,
                1.0,
                {"best": True},
                {"best": 1.0},
                3,
                animations[("a cup steaming", "c")].source_id,
                "train",
            ),
            (
                animations[("a frog hopping", "b")].pk,
                "anim-teacher-b",
                "anim-teacher-b",
                True,
                1.0,
                {"best": True},
                {"best": 1.0},
                2,
                animations[("a frog hopping", "b")].source_id,
                "train",
            ),
        ]
    )
    # The preview funnel names the pick condition and what it dropped.
    preview = api(curator).get(f"/api/dataset-rules/{rule.pk}/preview/").json()
    assert [(s["key"], s["label"], s["kept"], s["dropped"]) for s in preview["stages"]] == [
        ("source", "candidates in the source campaigns", 15, 0),
        ("gold", "not a gold item", 15, 0),
        ("paused_only", "not judged by paused raters only", 15, 0),
        ("min_judgments", "at least 1 judgment(s)", 15, 0),
        (
            "condition_0",
            "question 'best': the item's pick, by a share ≥ 0.6 of at least 2 judgment(s); "
            "ties keep none",
            3,
            12,
        ),
        ("kind", "is an animation", 3, 0),
        ("held_out", "not from a held-out prompt set", 3, 0),
    ]
    # The export carries the teacher of every row.
    version = dataset_version_publish(version=version, published_by=curator)
    root = dataset_version_local_copy(version=version)
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "dataset.json", "train"]
    rows = [json.loads(line) for line in (root / "train" / "metadata.jsonl").open()]
    picked = [
        animations[("a cat waving", "a")],
        animations[("a cup steaming", "c")],
        animations[("a frog hopping", "b")],
    ]
    assert rows == [
        {
            "file_name": f"{a.pk}.webp",
            "text": "waves",
            "split": "train",
            "candidate_id": a.pk,
            "label": True,
            "confidence": confidence,
            "labels": {"best": True},
            "confidences": {"best": confidence},
            "n_judgments": n,
            "model_version": teacher,
            "seed": a.seed,
            "prompt": prompt,
            "sha256": a.sha256,
            "teacher": teacher,
            "source_candidate_id": a.source_id,
            "frame_count": 4,
            "motion_score": a.motion_score,
            "source_file_name": f"sources/{a.source_id}.png",
            "frames_file_names": [f"frames/{a.pk}/frame-{i:03d}.png" for i in range(4)],
            "frames_dir": f"frames/{a.pk}",
        }
        for a, teacher, prompt, confidence, n in zip(
            picked,
            ["anim-teacher-a", "anim-teacher-c", "anim-teacher-b"],
            ["a cat waving", "a cup steaming", "a frog hopping"],
            [0.666667, 1.0, 1.0],
            [3, 3, 2],
            strict=True,
        )
    ]


def test_distill_student_trains_on_a_version_built_from_picks(
    teachers, curator, tiny_models_root, tmp_path, one_torch_thread
):
    from training_bridge.recipes import DatasetSpec, TrainingSpec, train

    campaign, _ = teachers
    version, _ = dataset_version_build(rule=pick_rule(campaign, curator), built_by=curator)
    version = dataset_version_publish(version=version, published_by=curator)
    spec = TrainingSpec(
        recipe="distill_student",
        base_model=str(tiny_models_root / "anim-student"),
        datasets=[
            DatasetSpec(
                role="teacher_selection", path=str(dataset_version_local_copy(version=version))
            )
        ],
        output_dir=str(tmp_path / "student"),
        params={
            "max_train_steps": 2,
            "train_batch_size": 2,
            "num_frames": 4,
            "inference_steps": 2,
            "checkpointing_steps": 100,
        },
        device="cpu",
    )
    # when
    result = train(spec)
    # then: one picked animation per teacher, all of them trained on
    assert result.steps == 2
    assert result.teacher_counts == {
        "anim-teacher-a": 1,
        "anim-teacher-b": 1,
        "anim-teacher-c": 1,
    }
    assert result.metrics["samples_seen"] == {"teacher_selection": 4}
    assert result.metrics["teacher_samples_seen"] == {
        "anim-teacher-a": 1,
        "anim-teacher-b": 1,
        "anim-teacher-c": 2,
    }


def test_the_api_takes_a_pick_condition_and_previews_its_minimum_of_judgments(
    teachers, curator, api
):
    campaign, animations = teachers
    client = api(curator)
    body = {
        "name": "picked teachers",
        "purpose": "teacher_selection",
        "campaigns": [campaign.pk],
        "conditions": [{"question": "best", "min_agreement": 0.6}],
    }
    # A draft with three judgments at least: the frog (two, one rater skipped) drops out.
    draft = client.post(
        "/api/dataset-rules/preview/",
        {**body, "conditions": [{**PICK_RULE, "min_judgments": 3}]},
        format="json",
    )
    assert draft.status_code == 200
    stage = next(s for s in draft.json()["stages"] if s["key"] == "condition_0")
    assert (stage["kept"], stage["dropped"]) == (2, 13)
    assert sorted(
        (c["candidate_id"], c["model_version"], c["confidence"]) for c in draft.json()["sample"]
    ) == sorted(
        [
            (animations[("a cat waving", "a")].pk, "anim-teacher-a", 0.666667),
            (animations[("a cup steaming", "c")].pk, "anim-teacher-c", 1.0),
        ]
    )
    created = client.post("/api/dataset-rules/create/", body, format="json")
    assert created.status_code == 201
    assert created.json()["conditions"] == [
        {"question": "best", "min_agreement": 0.6, "min_judgments": 1}
    ]


PAIRS = {
    "a red cat": ["left", "left", "tie"],  # left, by 2.5 of 3
    "a blue dog": ["left", "right", "tie"],  # a tie: neither kept
    "a green frog": ["right", "tie", "tie"],  # right, by 2 of 3: below 0.75
    "a pink bird": ["right", "right", "right"],  # right, by 3 of 3
}


def test_pair_preferences_keep_each_pair_s_winner(make, curator, api):
    # given a pair campaign of four pairs judged by three raters through the services
    stickers = {
        p: (make.sticker(p, seed=10 + i), make.sticker(p, seed=20 + i)) for i, p in enumerate(PAIRS)
    }
    raters = [make.rater(f"sider{i}") for i in range(3)]
    campaign = f.running_campaign(
        raters=raters,
        kind="pair",
        question_schema=f.PAIR_SCHEMA,
        overlap=3,
        groups=[list(pair) for pair in stickers.values()],
        name="sides",
    )
    prompt_of = {c.pk: p for p, pair in stickers.items() for c in pair}

    def answer(rater_index, item):
        return {"overall": PAIRS[prompt_of[item.candidate_ids_in_order()[0]]][rater_index]}

    rate(campaign, raters, answer)
    shown = {
        prompt_of[item.candidate_ids_in_order()[0]]: item.candidate_ids_in_order()
        for item in campaign.items.all()
    }
    # when
    response = api(curator).post(
        "/api/dataset-rules/create/",
        {
            "name": "preferred",
            "purpose": "style",
            "campaigns": [campaign.pk],
            "conditions": [{"question": "overall", "min_agreement": 0.75, "min_judgments": 2}],
            "validation_fraction": 0.0,
        },
        format="json",
    )
    assert response.status_code == 201
    version, _ = dataset_version_build(
        rule=DatasetRule.objects.get(pk=response.json()["id"]), built_by=curator
    )
    # then: the cat's left sticker and the bird's right one
    entries = DatasetEntry.objects.filter(version=version).order_by("candidate_id")
    assert [
        (e.candidate_id, e.label, e.confidence, e.labels, e.n_judgments, e.teacher) for e in entries
    ] == sorted(
        [
            (shown["a red cat"][0], True, 0.833333, {"overall": True}, 3, ""),
            (shown["a pink bird"][1], True, 1.0, {"overall": True}, 3, ""),
        ]
    )


@pytest.fixture
def sources(make):
    return {
        "align": make.campaign(name="align"),
        "teachers": make.campaign(kind="best_of_n", schema=f.MOTION_SCHEMA, name="teachers"),
        "pair": make.campaign(kind="pair", schema=f.PAIR_SCHEMA, name="pair"),
        "diversity": make.campaign(
            kind="set",
            schema=[{"key": "diversity", "type": "likert", "label": "How different?"}],
            name="diversity",
        ),
    }


def _pick(**changes):
    return [{"question": "best", "min_agreement": 0.5, **changes}]


@pytest.mark.parametrize(
    ("purpose", "names", "conditions", "expected"),
    [
        (
            "alignment",
            ["align"],
            [{"question": "aligned", "min_agreement": 0.5}],
            {
                "conditions.0.question": [
                    "Question 'aligned' of campaign 'align' is a binary question; a pick "
                    "condition needs a pick question (best of N) or a pair question answered "
                    "left or right (it has none)."
                ]
            },
        ),
        (
            "teacher_selection",
            ["teachers"],
            [{"question": "motion_pass", "min_agreement": 0.5}],
            {
                "conditions.0.question": [
                    "Question 'motion_pass' of campaign 'teachers' is a binary question; a pick "
                    "condition needs a pick question (best of N) or a pair question answered "
                    "left or right (it has best)."
                ]
            },
        ),
        (
            "teacher_selection",
            ["teachers"],
            [{"question": "best", "labels": [True]}],
            {
                "conditions.0.question": [
                    "Question 'best' of campaign 'teachers' is a pick question; give "
                    "min_agreement to keep the candidates it picked."
                ]
            },
        ),
        (
            "teacher_selection",
            ["teachers"],
            _pick(min_agreement=1.5),
            {"conditions.0.min_agreement": ["Must be a number between 0 and 1, not 1.5."]},
        ),
        (
            "teacher_selection",
            ["teachers"],
            _pick(min_agreement="most"),
            {"conditions.0.min_agreement": ["Must be a number between 0 and 1, not 'most'."]},
        ),
        (
            "teacher_selection",
            ["teachers"],
            _pick(min_judgments=0),
            {"conditions.0.min_judgments": ["Must be between 1 and 100, not 0."]},
        ),
        (
            "teacher_selection",
            ["teachers"],
            _pick(labels=[True]),
            {
                "conditions.0": [
                    "A pick condition (one with min_agreement) takes question, min_agreement, "
                    "min_judgments; not labels."
                ]
            },
        ),
        (
            "teacher_selection",
            ["teachers"],
            _pick(question=""),
            {"conditions.0.question": ["Name a pick question or a pair question."]},
        ),
        (
            "style",
            ["pair"],
            [
                {"question": "overall", "min_agreement": 0.5},
                {"question": "overall", "labels": ["left"]},
            ],
            {
                "campaigns": [
                    "Campaign 'pair' is a pair campaign; datasets take single-candidate or "
                    "best-of-N campaigns, and pair campaigns through pick conditions "
                    "(min_agreement) only."
                ]
            },
        ),
        (
            "style",
            ["diversity"],
            [{"question": "diversity", "min_agreement": 0.5}],
            {
                "campaigns": [
                    "Campaign 'diversity' is a set campaign; datasets take single-candidate or "
                    "best-of-N campaigns, and pair campaigns through pick conditions "
                    "(min_agreement) only."
                ]
            },
        ),
        (
            "teacher_selection",
            ["teachers", "pair"],
            _pick(),
            {
                "conditions.0.question": [
                    "Question 'best' is not in campaign 'pair' (questions: overall)."
                ]
            },
        ),
    ],
)
def test_a_pick_condition_without_picks_is_400_naming_the_field_and_stores_nothing(
    api, curator, sources, purpose, names, conditions, expected
):
    response = api(curator).post(
        "/api/dataset-rules/create/",
        {
            "name": "picks",
            "purpose": purpose,
            "campaigns": [sources[n].pk for n in names],
            "conditions": conditions,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == expected
    assert DatasetRule.objects.count() == 0


def test_changing_a_rule_to_a_pick_without_picks_leaves_it_as_it_was(api, curator, sources):
    rule = dataset_rule_create(
        values={
            "name": "aligned",
            "purpose": "alignment",
            "campaigns": [sources["align"]],
            "conditions": [{"question": "aligned", "labels": [True]}],
        },
        created_by=curator,
    )
    response = api(curator).post(
        f"/api/dataset-rules/{rule.pk}/update/",
        {"conditions": [{"question": "quality", "min_agreement": 0.5}]},
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()) == ["conditions.0.question"]
    rule.refresh_from_db()
    assert rule.conditions == [{"question": "aligned", "labels": [True]}]


def _form(campaign, *rows, **changes) -> dict:
    """The rule form's POST body: the rule's fields and one formset row per condition."""
    data = {
        "name": "picked teachers",
        "purpose": "teacher_selection",
        "kind": "",
        "campaigns": [campaign.pk],
        "consensus_method": "majority",
        "min_judgments": "1",
        "exclude_gold": "on",
        "exclude_paused_only": "on",
        "exclude_held_out": "on",
        "validation_fraction": "0",
        "split_seed": "0",
        "caption_source": "motion_prompt",
        "conditions-TOTAL_FORMS": str(len(rows)),
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "10",
        **changes,
    }
    for index, row in enumerate(rows):
        data.update({f"conditions-{index}-{k}": v for k, v in row.items()})
    return data


PICK_ROW = {"keep": "pick", "question": "best", "min_agreement": "0.6", "min_judgments": "2"}
STAGE_ROW = re.compile(
    r'data-stage="(\w+)"><td>[^<]*</td><td data-field="kept">(\d+)</td>'
    r'<td data-field="dropped">(\d+)</td>'
)


def test_the_rule_form_previews_and_saves_a_pick_condition(teachers, curator):
    campaign, _ = teachers
    client = logged_in(curator)
    page = client.get("/datasets/rules/new/").content.decode()
    assert '<option value="pick">the candidate people picked (best of N, pair)</option>' in page
    assert '<option value="best">best: pick in teachers</option>' in page
    assert '<option value="motion_pass">motion_pass: binary in teachers</option>' in page
    # Preview: the funnel of the unsaved settings, nothing stored.
    preview = client.post("/datasets/rules/new/", _form(campaign, PICK_ROW, {}, preview="1"))
    assert preview.status_code == 200
    assert STAGE_ROW.findall(preview.content.decode())[4] == ("condition_0", "3", "12")
    assert DatasetRule.objects.count() == 0
    # Save.
    saved = client.post("/datasets/rules/new/", _form(campaign, PICK_ROW, {}, save="1"))
    rule = DatasetRule.objects.get()
    assert saved.status_code == 302 and saved["Location"] == f"/datasets/rules/{rule.pk}/"
    assert (rule.purpose, rule.kind, rule.conditions) == (
        "teacher_selection",
        "animation",
        [PICK_RULE],
    )
    assert list(rule.campaigns.all()) == [campaign]
    # The edit page shows the pick row as saved and changes it.
    page = client.get(f"/datasets/rules/{rule.pk}/edit/").content.decode()
    assert '<option value="pick" selected>' in page
    assert 'name="conditions-0-min_agreement" value="0.6"' in page
    changed = client.post(
        f"/datasets/rules/{rule.pk}/edit/",
        _form(campaign, {**PICK_ROW, "min_agreement": "0.9"}, save="1"),
    )
    assert changed.status_code == 302
    rule.refresh_from_db()
    assert rule.conditions == [{**PICK_RULE, "min_agreement": 0.9}]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {**PICK_ROW, "question": "motion_pass"},
            "Question &#x27;motion_pass&#x27; of campaign &#x27;teachers&#x27; is a binary "
            "question; a pick condition needs a pick question (best of N) or a pair question "
            "answered left or right (it has best).",
        ),
        (
            {**PICK_ROW, "min_agreement": ""},
            "Give the share of the item&#x27;s judgments that must pick the candidate, 0 to 1.",
        ),
        (
            {"keep": "answers", "question": "motion_pass", "labels": "true", "min_agreement": "1"},
            "Only pick conditions take this: keep the candidate people picked.",
        ),
        (
            {**PICK_ROW, "labels": "true"},
            "Only answer conditions take this.",
        ),
    ],
)
def test_the_rule_form_refuses_a_pick_without_picks_and_stores_nothing(
    teachers, curator, row, expected
):
    campaign, _ = teachers
    response = logged_in(curator).post("/datasets/rules/new/", _form(campaign, row, save="1"))
    assert response.status_code == 200
    html = response.content.decode()
    row_html = re.search(r'<tr data-condition="0">(.*?)</tr>', html, re.S).group(1)
    assert expected in row_html
    assert DatasetRule.objects.count() == 0


def test_only_curators_reach_the_rule_form(teachers, curator, engineer, rater):
    campaign, _ = teachers
    rule = pick_rule(campaign, curator)
    for url in ("/datasets/rules/new/", f"/datasets/rules/{rule.pk}/edit/"):
        assert logged_in(curator).get(url).status_code == 200
        for user in (engineer, rater):
            assert logged_in(user).get(url).status_code == 403
            body = _form(campaign, {**PICK_ROW, "min_agreement": "0.1"}, name="x", save="1")
            assert logged_in(user).post(url, body).status_code == 403
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and anonymous["Location"] == f"/login/?next={url}"
    assert DatasetRule.objects.count() == 1
    rule.refresh_from_db()
    assert (rule.name, rule.conditions) == ("picked teachers", [PICK_RULE])
