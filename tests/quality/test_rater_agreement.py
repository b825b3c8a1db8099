"""Agreement between raters, defined once (``aggregation.others_agreeing``): per judgment, the
share of the other raters of the item who gave the same answer. "Pairs agreeing" averages it
over a question's items, a rater's agreement over the rater's judgments; the quality page shows
both with a note that says so. Two raters who agree on one item of two get 0.5 everywhere,
where agreement with a majority consensus gave each of them 1.0 beside pairs agreeing 0.5."""

import numpy as np
import pytest

from annotation.models import CampaignMembership
from annotation.quality import aggregation
from annotation.quality.models import AgreementResult, RaterQuality
from annotation.quality.services.policy import quality_policy_set
from annotation.quality.services.results import campaign_results_compute
from tests import factories as f
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

OK = [{"key": "ok", "type": "binary", "label": "Shows the prompt?"}]


def test_others_agreeing_per_judgment():
    # items 1: yes yes no; 2: yes yes yes; 3: yes (alone)
    responses = aggregation.Responses(
        item_ids=np.array([1, 1, 1, 2, 2, 2, 3]),
        rater_ids=np.array([10, 11, 12, 10, 11, 12, 10]),
        codes=np.array([0, 0, 1, 0, 0, 0, 0]),
        labels=(True, False),
    )
    share, shared = aggregation.others_agreeing(responses)
    assert share.tolist() == [0.5, 0.5, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert shared.tolist() == [True] * 6 + [False]
    assert aggregation.rater_agreement(responses) == {10: (0.75, 2), 11: (0.75, 2), 12: (0.5, 2)}
    figures = aggregation.agreement(responses, level="nominal")
    assert figures.observed_agreement == pytest.approx(2 / 3)  # (1/3 + 1) / 2
    # Every shared item has three judgments: the raters' figures average to the pairs figure.
    assert np.mean([0.75, 0.75, 0.5]) == pytest.approx(figures.observed_agreement)


def _two_raters_one_agreement():
    camp = f.campaign(questions=OK, overlap=2)
    a, b = f.items(camp, 2)
    kim, lee = f.raters(2, campaign=camp)
    f.judge(a, kim, {"ok": True})
    f.judge(a, lee, {"ok": True})
    f.judge(b, kim, {"ok": True})
    f.judge(b, lee, {"ok": False})  # a tie: no majority on this item
    return camp, kim, lee


def test_two_raters_get_the_pairs_figure(curator):
    # given: two raters agreeing on one item of two
    camp, kim, lee = _two_raters_one_agreement()
    # when
    campaign_results_compute(campaign=camp, methods=["majority"])
    # then: pairs agreeing 0.5, and each rater 0.5 on both items
    assert AgreementResult.objects.get(campaign=camp).observed_agreement == 0.5
    assert sorted(
        RaterQuality.objects.filter(campaign=camp).values_list(
            "rater_id", "consensus_agreement", "n_consensus"
        )
    ) == [(kim.pk, 0.5, 2), (lee.pk, 0.5, 2)]
    # and the quality page shows the same numbers, with what they mean
    html = logged_in(curator).get(f"/quality/campaigns/{camp.pk}/").content.decode()
    assert '<dd data-field="pairs">0.500</dd>' in html
    assert html.count('<td data-value="0.5">0.50</td>') == 2
    assert "Agreement with other raters</th>" in html
    assert (
        "<strong>Agreement with other raters:</strong> over a rater's judgments of items that "
        "others judged too, the share of those others who gave the same answer"
    ) in html


def test_agreement_pools_questions_by_judgment():
    # given: two questions; on "ok" the raters agree on 1 item of 2, on "nice" on both
    questions = [*OK, {"key": "nice", "type": "binary", "label": "Nice?"}]
    camp = f.campaign(questions=questions, overlap=2)
    a, b = f.items(camp, 2)
    kim, lee = f.raters(2, campaign=camp)
    for item, theirs in ((a, True), (b, False)):
        f.judge(item, kim, {"ok": True, "nice": True})
        f.judge(item, lee, {"ok": theirs, "nice": True})
    # when
    campaign_results_compute(campaign=camp, methods=["majority"])
    # then: 3 agreeing of 4 judgments each, beside pairs agreeing 0.5 and 1.0
    assert dict(
        AgreementResult.objects.filter(campaign=camp).values_list(
            "question_key", "observed_agreement"
        )
    ) == {"ok": 0.5, "nice": 1.0}
    assert sorted(
        RaterQuality.objects.filter(campaign=camp).values_list(
            "rater_id", "consensus_agreement", "n_consensus"
        )
    ) == [(kim.pk, 0.75, 4), (lee.pk, 0.75, 4)]


def test_a_rater_below_the_agreement_threshold_is_paused_with_the_reason():
    # given: three raters on two items, the third disagreeing on the first
    camp = f.campaign(questions=OK, overlap=3)
    first, second = f.items(camp, 2)
    kim, lee, max_ = f.raters(3, campaign=camp)
    for rater, answer in ((kim, True), (lee, True), (max_, False)):
        f.judge(first, rater, {"ok": answer})
        f.judge(second, rater, {"ok": True})
    quality_policy_set(campaign=camp, min_consensus_agreement=0.6, min_consensus_judgments=2)
    # when
    summary = campaign_results_compute(campaign=camp, methods=["majority"])
    # then: kim and lee agree with 1 of 2 others on the first item and all on the second (0.75);
    # max with none, then all (0.5)
    assert summary["paused"] == [max_.pk]
    assert CampaignMembership.objects.get(campaign=camp, rater=max_).paused_reason == (
        "Agreement with the other raters 50% on 2 judgments is below the campaign's 60%."
    )
    assert sorted(
        RaterQuality.objects.filter(campaign=camp).values_list("rater_id", "consensus_agreement")
    ) == [(kim.pk, 0.75), (lee.pk, 0.75), (max_.pk, 0.5)]
