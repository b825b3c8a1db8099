import pytest
from django.core.exceptions import ValidationError

from annotation.quality.selectors import ItemConsensus, item_consensus
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
