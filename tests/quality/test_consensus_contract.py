import pytest
from django.core.exceptions import ValidationError

from annotation.quality.selectors import (
    ItemConsensus,
    ItemPick,
    item_consensus,
    item_consensus_lookup,
    item_picks,
)
from tests import factories as f

BINARY = [{"key": "ok", "type": "binary", "label": "OK?"}]
LIKERT = [{"key": "score", "type": "likert", "label": "Score"}]


@pytest.mark.django_db
def test_majority_on_the_fly_reports_ties_and_ignores_excluded_and_skipped():
    # given three items judged by four raters
    camp = f.campaign(questions=BINARY, overlap=4)
    a, b, c = f.items(camp, 3)
    r = f.raters(4)
    for rater, v in zip(r, [True, True, True, False], strict=True):
        f.judge(a, rater, {"ok": v})
    for rater, v in zip(r, [True, False], strict=False):
        f.judge(b, rater, {"ok": v})
    f.judge(c, r[0], {"ok": False})
    f.judge(c, r[1], {"ok": True}, excluded=True)
    f.judge(c, r[2], {}, skipped=True)

    # when
    result = item_consensus(campaign_id=camp.pk, question_key="ok")

    # then
    assert result == {
        a.pk: ItemConsensus(label=True, confidence=0.75, n_judgments=4, is_tie=False),
        b.pk: ItemConsensus(
            label=None, confidence=0.5, n_judgments=2, is_tie=True, tied_labels=(True, False)
        ),
        c.pk: ItemConsensus(label=False, confidence=1.0, n_judgments=1, is_tie=False),
    }


@pytest.mark.django_db
def test_the_lookup_gives_each_item_what_the_dict_gives_and_nothing_for_others():
    # given three items, one of them a tie, and one item nobody judged
    camp = f.campaign(questions=BINARY, overlap=2)
    a, b, c, unjudged = f.items(camp, 4)
    r = f.raters(2)
    for item, answers in ((a, [True, True]), (b, [True, False]), (c, [False])):
        for rater, v in zip(r, answers, strict=False):
            f.judge(item, rater, {"ok": v})

    # when
    lookup = item_consensus_lookup(campaign_id=camp.pk, question_key="ok")

    # then: the same values as item_consensus, by item id in ascending order
    assert not isinstance(lookup, dict)
    assert list(lookup) == [a.pk, b.pk, c.pk]
    assert len(lookup) == 3
    assert dict(lookup) == item_consensus(campaign_id=camp.pk, question_key="ok")
    assert lookup[b.pk] == ItemConsensus(
        label=None, confidence=0.5, n_judgments=2, is_tie=True, tied_labels=(True, False)
    )
    assert lookup.get(unjudged.pk) is None
    assert lookup.get(a.pk - 1) is None
    assert lookup.get(c.pk + 10**6) is None
    with pytest.raises(KeyError):
        lookup[unjudged.pk]


@pytest.mark.django_db
def test_likert_consensus_has_mean_and_median():
    camp = f.campaign(questions=LIKERT, overlap=3)
    (item,) = f.items(camp, 1)
    for rater, v in zip(f.raters(3), [2, 5, 5], strict=True):
        f.judge(item, rater, {"score": v})

    result = item_consensus(campaign_id=camp.pk, question_key="score")

    assert result[item.pk] == ItemConsensus(
        label=5, confidence=2 / 3, n_judgments=3, is_tie=False, mean=4.0, median=5.0
    )


@pytest.mark.django_db
def test_method_that_does_not_fit_the_question_is_refused():
    camp = f.campaign(questions=BINARY)
    with pytest.raises(ValidationError) as error:
        item_consensus(campaign_id=camp.pk, question_key="ok", method="mean")
    assert error.value.message_dict == {
        "method": [
            "Method 'mean' does not fit question 'ok' of type 'binary' (methods that "
            "fit: majority, dawid_skene, glad, mace)."
        ]
    }
    with pytest.raises(ValidationError) as error:
        item_consensus(campaign_id=camp.pk, question_key="nope")
    assert error.value.message_dict == {
        "question_key": [f"Campaign {camp.pk} has no question 'nope' (ok)."]
    }


PICK = [{"key": "best", "type": "pick", "label": "Best", "required": False}]
SIDE = [
    {
        "key": "overall",
        "type": "single_choice",
        "label": "Better overall",
        "options": [
            {"value": "left", "label": "Left", "shortcut": "1"},
            {"value": "tie", "label": "Tie", "shortcut": "2"},
            {"value": "right", "label": "Right", "shortcut": "3"},
        ],
    }
]


def _shown(item) -> list[int]:
    return item.candidate_ids_in_order()


@pytest.mark.django_db
def test_picks_count_every_judgment_and_report_ties():
    # given four best-of-3 items
    camp = f.campaign(questions=PICK, kind="best_of_n", overlap=4)
    a, b, c, d = f.items(camp, 4, per_item=3)
    r = f.raters(4)
    ca, cb, cc = _shown(a), _shown(b), _shown(c)
    for rater, pick in zip(r, [ca[0], ca[0], ca[1]], strict=False):
        f.judge(a, rater, {"best": pick})
    f.judge(b, r[0], {"best": cb[0]})
    f.judge(b, r[1], {"best": cb[1]})
    f.judge(c, r[0], {})  # picked none: counts
    f.judge(c, r[1], {"best": cc[2]})
    f.judge(c, r[2], {"best": cc[1]}, excluded=True)
    f.judge(c, r[3], {}, skipped=True)
    f.judge(d, r[0], {})

    # when
    picks = item_picks(campaign_id=camp.pk, question_key="best")

    # then
    assert picks == {
        a.pk: ItemPick(winner=ca[0], share=2 / 3, n_judgments=3),
        b.pk: ItemPick(winner=None, share=0.5, n_judgments=2, tied=tuple(sorted(cb[:2]))),
        c.pk: ItemPick(winner=cc[2], share=0.5, n_judgments=2),
        d.pk: ItemPick(winner=None, share=0.0, n_judgments=1),
    }


@pytest.mark.django_db
def test_pair_picks_count_a_tie_half_for_each_side():
    camp = f.campaign(questions=SIDE, kind="pair", overlap=3)
    p, q, s = f.items(camp, 3, per_item=2)
    r = f.raters(3)
    for item, answers in ((p, ["left", "tie"]), (q, ["left", "right"]), (s, ["tie", "tie"])):
        for rater, answer in zip(r, answers, strict=False):
            f.judge(item, rater, {"overall": answer})

    picks = item_picks(campaign_id=camp.pk, question_key="overall")

    assert picks == {
        p.pk: ItemPick(winner=_shown(p)[0], share=0.75, n_judgments=2),
        q.pk: ItemPick(winner=None, share=0.5, n_judgments=2, tied=tuple(sorted(_shown(q)))),
        s.pk: ItemPick(winner=None, share=0.5, n_judgments=2, tied=tuple(sorted(_shown(s)))),
    }


@pytest.mark.django_db
def test_picks_of_a_question_that_picks_nothing_are_refused():
    camp = f.campaign(questions=BINARY)
    with pytest.raises(ValidationError) as error:
        item_picks(campaign_id=camp.pk, question_key="ok")
    assert error.value.message_dict == {
        "question_key": [
            "Question 'ok' is a binary question; picks come from pick questions and pair questions."
        ]
    }
