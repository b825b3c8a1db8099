"""Answers per question type from hand-written oracle verdicts, then bent by each profile."""

import random

import pytest

from annotation.schema import preset_questions
from simulation.policies import (
    REQUIRED_NOTE,
    agreement,
    answer_sheet,
    bend,
    diversity,
    see,
    truthful,
)
from simulation.profiles import PROFILES
from tests.simulation.oracle_dicts import clip, image

RELIABLE, SPAMMER = PROFILES["reliable"], PROFILES["spammer"]
PASS_BIASED, ADVERSARIAL = PROFILES["pass_biased"], PROFILES["adversarial"]


class Draws(random.Random):
    """A random stream whose ``random()`` answers from a list, so a test says which way each
    decision falls; ``choice`` and ``randint`` still draw from the seeded generator."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)

    def getrandbits(self, k: int) -> int:
        return super().getrandbits(k)


def shown(position: int, prompt: str, *, side: str = "", motion_prompt: str = "") -> dict:
    kind = "animation" if motion_prompt else "sticker"
    return {
        "position": position,
        "side": side,
        "kind": kind,
        "prompt": prompt,
        "motion_prompt": motion_prompt,
    }


def question(key: str, qtype: str, **extra) -> dict:
    return {"key": key, "type": qtype, "label": key, "required": True, **extra}


def test_see_scores_alignment_and_style_from_the_probabilities():
    seen = see(
        candidate=shown(0, "a sad blue cat"),
        image=image("cat", "red", "happy", off={"outline": "none"}),
    )

    assert seen.scores["alignment"] == pytest.approx(0.9 * (0.1 / 7) * (0.1 / 5))
    assert seen.scores["style"] == pytest.approx(0.9 * 0.05 * 0.9 * 0.9)
    assert seen.holds == {
        "alignment": False,
        "style": False,
        "moving": False,
        "motion_relevant": False,
        "smooth": False,
        "consistent": False,
        "motion": False,
        "overall": False,
    }
    assert (seen.missing, seen.defects) == (("attribute",), ("no_border",))
    assert (seen.content, seen.animated) == (("cat", "red", "happy"), False)


def test_alignment_preset_as_the_oracle_sees_it():
    schema = preset_questions("alignment")
    right = [see(candidate=shown(0, "a happy red cat"), image=image())]
    wrong = [see(candidate=shown(0, "a bear in red, happy"), image=image())]

    # The note and an empty list of reasons are optional: left out, as a person leaves them.
    # The reason tags follow what does not match.
    assert answer_sheet(schema, right, RELIABLE, Draws(0.5)) == (
        {"aligned": True},
        {"aligned": True},
    )
    assert answer_sheet(schema, wrong, RELIABLE, Draws(0.5)) == (
        {"aligned": False, "missing": ["subject"]},
        {"aligned": False, "missing": ["subject"]},
    )


def test_style_preset_tags_each_defect_the_oracle_sees():
    schema = preset_questions("style")
    off = {"background": "textured", "finish": "shaded", "placement": "cropped"}
    seen = [see(candidate=shown(0, "a red cat"), image=image(off=off))]

    assert answer_sheet(schema, seen, RELIABLE, Draws(0.5))[1] == {
        "style_pass": False,
        "defects": ["background", "cropped", "photorealistic"],
    }


def test_binary_answers_bent_by_each_profile():
    q = question("aligned", "binary")
    seen = [see(candidate=shown(0, "a happy red cat"), image=image())]

    assert bend(q, True, seen, RELIABLE, Draws(0.94)) is True
    assert bend(q, True, seen, RELIABLE, Draws(0.96)) is False  # beyond its accuracy of 0.95
    assert bend(q, False, seen, PASS_BIASED, Draws(0.5, 0.69)) is True  # leans to pass at 0.7
    assert bend(q, False, seen, PASS_BIASED, Draws(0.5, 0.71)) is False
    assert bend(q, True, seen, ADVERSARIAL, Draws(0.5)) is False  # right only 1 time in 10
    assert bend(q, True, seen, ADVERSARIAL, Draws(0.05)) is True
    # A spammer does not look: a coin decides, whatever the truth.
    assert [bend(q, True, seen, SPAMMER, Draws(x)) for x in (0.49, 0.51)] == [True, False]
    assert [bend(q, False, seen, SPAMMER, Draws(x)) for x in (0.49, 0.51)] == [True, False]


def test_pairs_compare_the_oracle_scores_by_side():
    schema = preset_questions("pairwise")
    # The left candidate is shown second: answers follow the side, not the position.
    seen = [
        see(candidate=shown(0, "a happy red cat", side="right"), image=image("bear")),
        see(candidate=shown(1, "a happy red cat", side="left"), image=image("cat")),
    ]

    # Both are equally good stickers (a tie); motion is for animations only and left blank.
    assert answer_sheet(schema, seen, RELIABLE, Draws(0.5, 0.5, 0.5))[1] == {
        "alignment": "left",
        "style": "tie",
        "overall": "left",
    }


def test_pair_answers_bent_by_the_adversarial_and_reliable_profiles():
    q = preset_questions("pairwise")[0]
    seen = [
        see(candidate=shown(0, "a red cat", side="left"), image=image()),
        see(candidate=shown(1, "a red cat", side="right"), image=image()),
    ]

    assert bend(q, "left", seen, ADVERSARIAL, Draws(0.5)) == "right"
    assert bend(q, "right", seen, ADVERSARIAL, Draws(0.5)) == "left"
    assert bend(q, "left", seen, RELIABLE, Draws(0.1)) == "left"
    assert bend(q, "tie", seen, RELIABLE, Draws(0.1)) == "tie"


def test_a_pair_is_a_tie_within_the_margin():
    q = question("style", "single_choice", options=preset_questions("pairwise")[1]["options"])
    close = [
        see(candidate=shown(0, "a red cat", side="left"), image=image(style_yes=0.60)),
        see(candidate=shown(1, "a red cat", side="right"), image=image(style_yes=0.74)),
    ]
    apart = [
        see(candidate=shown(0, "a red cat", side="left"), image=image(style_yes=0.60)),
        see(candidate=shown(1, "a red cat", side="right"), image=image(style_yes=0.76)),
    ]

    assert (truthful(q, close), truthful(q, apart)) == ("tie", "right")


def animations(motion_prompt: str, clips: list[dict]) -> list:
    return [
        see(
            candidate=shown(i, "a happy red cat", motion_prompt=motion_prompt),
            image=image(),
            animation=c,
            later_image=image(),
        )
        for i, c in enumerate(clips)
    ]


def test_best_of_n_passes_each_candidate_and_picks_the_best():
    schema = preset_questions("teacher_selection")
    seen = animations(
        "spinning", [clip("spin", "jerky"), clip("spin", "smooth"), clip("bounce", "smooth")]
    )

    given, truth = answer_sheet(schema, seen, RELIABLE, Draws(0.5, 0.5, 0.5, 0.5))
    assert truth == {"motion_pass": {"0": False, "1": True, "2": False}, "best": 1}
    assert given == truth


def test_the_adversarial_rater_picks_the_worst_candidate():
    q = preset_questions("teacher_selection")[1]
    seen = animations(
        "spinning", [clip("spin", "jerky"), clip("spin", "smooth"), clip("bounce", "smooth")]
    )

    assert bend(q, 1, seen, ADVERSARIAL, Draws(0.5)) == 2
    assert bend(q, 1, seen, RELIABLE, Draws(0.5)) == 1


def test_motion_preset_reads_the_clip_and_the_frames():
    schema = preset_questions("motion")
    [seen] = animations("bouncing", [clip("spin", "smooth")])
    drifting = see(
        candidate=shown(0, "a happy red cat", motion_prompt="spinning"),
        image=image("cat"),
        animation=clip("spin", "jerky"),
        later_image=image("bear"),
    )

    assert answer_sheet(schema, [seen], RELIABLE, Draws(*[0.5] * 8))[1] == {
        "motion_present": True,
        "motion_big_enough": True,
        "motion_relevant": False,
        "subject_consistent": True,
        "artifact_free": True,
        "loops_smoothly": True,
        "style_kept": True,
        "overall": False,
    }
    assert answer_sheet(schema, [drifting], RELIABLE, Draws(*[0.5] * 8))[1] == {
        "motion_present": True,
        "motion_big_enough": True,
        "motion_relevant": True,
        "subject_consistent": False,
        "artifact_free": False,
        "loops_smoothly": False,
        "style_kept": True,
        "overall": False,
    }


def test_a_still_clip_has_no_motion_and_an_unnamed_motion_is_any_motion():
    [still] = animations("", [clip("still", "smooth")])
    [moving] = animations("", [clip("wave", "smooth")])

    assert (still.holds["moving"], still.holds["motion_relevant"]) == (False, False)
    assert (moving.holds["moving"], moving.holds["motion_relevant"]) == (True, True)
    assert still.scores["moving"] == pytest.approx(0.1)


def test_set_of_n_diversity_counts_distinct_content():
    schema = preset_questions("diversity")
    seen = [
        see(candidate=shown(0, "a red cat"), image=image("cat", "red", "happy")),
        see(candidate=shown(1, "a red cat"), image=image("cat", "red", "happy")),
        see(candidate=shown(2, "a red cat"), image=image("bear", "blue", "sad")),
        see(candidate=shown(3, "a red cat"), image=image("star", "red", None)),
    ]

    # 3 different of 4: 1 + 4 * 2/3, rounded.
    assert answer_sheet(schema, seen, RELIABLE, Draws(0.5))[1] == {"diversity": 4}
    assert (diversity(seen[:2]), diversity(seen[:1]), diversity(seen[1:])) == (1, 1, 5)


def test_likert_answers_bent_by_each_profile():
    q = question("diversity", "likert")
    seen = [see(candidate=shown(0, "a red cat"), image=image())]

    assert bend(q, 2, seen, ADVERSARIAL, Draws(0.5)) == 4
    assert bend(q, 1, seen, RELIABLE, Draws(0.99)) == 2  # the only neighbour of 1
    assert bend(q, 5, seen, RELIABLE, Draws(0.99)) == 4
    assert bend(q, 3, seen, PASS_BIASED, Draws(0.5, 0.3)) == 4
    assert bend(q, 5, seen, PASS_BIASED, Draws(0.5)) == 5
    assert 1 <= bend(q, 3, seen, SPAMMER, Draws()) <= 5


def test_custom_questions_of_every_other_kind():
    seen = [see(candidate=shown(0, "a happy red cat"), image=image())]
    options = [
        {"value": "great", "label": "Great", "shortcut": "1"},
        {"value": "meh", "label": "Meh", "shortcut": "2"},
        {"value": "bad", "label": "Bad", "shortcut": "3"},
    ]
    schema = [
        question("verdict", "single_choice", options=options),
        question("score", "likert"),
        question("why", "text"),
        question("tags", "multi_choice", options=options, min_choices=2, max_choices=3),
        question("aside", "text", required=False),
    ]

    # overall: aligned and in style, so the first option; a Likert score of 1 + 4 * 0.9^7.
    assert answer_sheet(schema, seen, RELIABLE, Draws(0.5, 0.5))[1] == {
        "verdict": "great",
        "score": 3,
        "why": REQUIRED_NOTE,
        "tags": ["great", "meh"],
    }


def test_agreement_counts_each_candidate_of_a_per_candidate_question():
    schema = preset_questions("teacher_selection")
    truth = {"motion_pass": {"0": True, "1": False}, "best": 1}
    given = {"motion_pass": {"0": True, "1": True}, "best": 1}

    assert agreement(schema, given, truth) == (2, 3)
    alignment = preset_questions("alignment")
    assert agreement(alignment, {"aligned": False, "missing": []}, {"aligned": True}) == (0, 1)
