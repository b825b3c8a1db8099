import pytest
from django.core.exceptions import ValidationError

from annotation.schema import PRESETS, normalise_schema, preset_questions, validate_answers


def _errors(call) -> dict:
    with pytest.raises(ValidationError) as info:
        call()
    return info.value.message_dict


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_are_valid_schemas(preset):
    questions = preset_questions(preset)
    assert normalise_schema(questions, kind=PRESETS[preset]["kinds"][0]) == questions


def test_style_preset_has_the_defect_tags():
    [_, defects, _] = preset_questions("style")
    assert [o["value"] for o in defects["options"]] == [
        "no_border",
        "background",
        "stray_text",
        "cropped",
        "photorealistic",
        "cluttered",
    ]
    assert [o["shortcut"] for o in defects["options"]] == ["1", "2", "3", "4", "5", "6"]


def test_normalise_fills_defaults():
    [q] = normalise_schema([{"key": "ok", "type": "binary", "label": " Fine? "}], kind="single")
    assert q == {
        "key": "ok",
        "type": "binary",
        "label": "Fine?",
        "help": "",
        "required": True,
        "per_candidate": False,
        "options": [
            {"value": True, "label": "Yes", "shortcut": "y"},
            {"value": False, "label": "No", "shortcut": "n"},
        ],
    }


@pytest.mark.parametrize(
    ("schema", "kind", "message"),
    [
        ([], "single", "Give at least one question."),
        (
            [{"key": "A b", "type": "binary", "label": "x"}],
            "single",
            "Question 1: key 'A b' must be lowercase letters, digits and _ (at most 40).",
        ),
        (
            [{"key": "q", "type": "slider", "label": "x"}],
            "single",
            "Question 1 ('q'): unknown type 'slider'; use one of binary, likert, single_choice, "
            "multi_choice, text, pick.",
        ),
        (
            [
                {"key": "q", "type": "binary", "label": "x"},
                {"key": "q", "type": "text", "label": "y"},
            ],
            "single",
            "Question 2 ('q'): the key is used twice.",
        ),
        (
            [{"key": "q", "type": "single_choice", "label": "x"}],
            "single",
            "Question 1 ('q'): a single_choice question needs options.",
        ),
        (
            [
                {
                    "key": "q",
                    "type": "single_choice",
                    "label": "x",
                    "options": [
                        {"value": "a", "label": "A", "shortcut": "s"},
                        {"value": "b", "label": "B", "shortcut": "2"},
                    ],
                }
            ],
            "single",
            "Question 1 ('q'): shortcut 's' is reserved by the rating screen "
            "(reserved: , . ? [ ] b g "
            "p s u and space).",
        ),
        (
            [
                {
                    "key": "q",
                    "type": "single_choice",
                    "label": "x",
                    "options": [
                        {"value": "a", "label": "A", "shortcut": "1"},
                        {"value": "b", "label": "B", "shortcut": "1"},
                    ],
                }
            ],
            "single",
            "Question 1 ('q'): shortcuts must not repeat within a question.",
        ),
        (
            [{"key": "q", "type": "pick", "label": "Best"}],
            "single",
            "Question 1 ('q'): a pick question needs a campaign that shows several candidates.",
        ),
        (
            [{"key": "q", "type": "binary", "label": "x", "per_candidate": True}],
            "single",
            "Question 1 ('q'): per_candidate needs a campaign that shows several candidates.",
        ),
        (
            [
                {
                    "key": "q",
                    "type": "likert",
                    "label": "x",
                    "options": [
                        {"value": v, "label": str(v), "shortcut": str(v)} for v in range(5)
                    ],
                }
            ],
            "single",
            "Question 1 ('q'): likert options must be the values 1 to 5 in order.",
        ),
        (
            [{"key": "q", "type": "binary", "label": ""}],
            "single",
            "Question 1 ('q'): a label of 1 to 300 characters is required.",
        ),
        (
            [{"key": "q", "type": "text", "label": "x", "max_length": 0}],
            "single",
            "Question 1 ('q'): max_length must be an integer from 1 to 2000.",
        ),
    ],
)
def test_bad_schemas_name_the_question_and_problem(schema, kind, message):
    assert _errors(lambda: normalise_schema(schema, kind=kind)) == {"question_schema": [message]}


STYLE = preset_questions("style")


def test_answers_are_checked_and_cleaned():
    answers = {"style_pass": False, "defects": ["cropped", "stray_text"], "note": ""}
    assert validate_answers(STYLE, answers, candidate_ids=[1]) == {
        "style_pass": False,
        "defects": ["cropped", "stray_text"],
    }


@pytest.mark.parametrize(
    ("answers", "errors"),
    [
        ({}, {"answers.style_pass": ["This question is required."]}),
        ({"style_pass": "yes"}, {"answers.style_pass": ["Must be true or false."]}),
        (
            {"style_pass": True, "defects": ["blurry"]},
            {
                "answers.defects": [
                    "'blurry' is not one of no_border, background, stray_text, cropped, "
                    "photorealistic, cluttered."
                ]
            },
        ),
        (
            {"style_pass": True, "defects": ["cropped", "cropped"]},
            {"answers.defects": ["Options must not repeat."]},
        ),
        ({"style_pass": True, "colour": 3}, {"answers.colour": ["Unknown question 'colour'."]}),
        (
            {"style_pass": True, "note": "x" * 1001},
            {"answers.note": ["At most 1000 characters, not 1001."]},
        ),
    ],
)
def test_bad_answers_name_the_question(answers, errors):
    assert _errors(lambda: validate_answers(STYLE, answers, candidate_ids=[1])) == errors


def test_likert_range():
    schema = preset_questions("diversity")
    assert _errors(lambda: validate_answers(schema, {"diversity": 6}, candidate_ids=[1, 2])) == {
        "answers.diversity": ["Must be an integer from 1 to 5, not 6."]
    }
    assert validate_answers(schema, {"diversity": 5}, candidate_ids=[1, 2]) == {"diversity": 5}


def test_per_candidate_and_pick_answers():
    schema = preset_questions("teacher_selection")
    ok = {"motion_pass": {"11": True, "12": False}, "best": 11}
    assert validate_answers(schema, ok, candidate_ids=[11, 12]) == ok
    assert validate_answers(
        schema, {"motion_pass": {"11": True, "12": True}, "best": None}, candidate_ids=[11, 12]
    ) == {"motion_pass": {"11": True, "12": True}}
    assert _errors(
        lambda: validate_answers(schema, {"motion_pass": {"11": True}}, candidate_ids=[11, 12])
    ) == {"answers.motion_pass": ["Answer for candidate 12 is missing."]}
    assert _errors(
        lambda: validate_answers(
            schema, {"motion_pass": {"11": True, "12": True}, "best": 99}, candidate_ids=[11, 12]
        )
    ) == {"answers.best": ["99 is not one of the shown candidates (11, 12)."]}
