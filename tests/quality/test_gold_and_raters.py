"""Gold items and scores, rater quality, automatic pauses with exclusion, resume, the
qualification gate and adaptive overlap, through the services the task and APIs call."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotation.models import CampaignMembership, Item, Judgment
from annotation.quality.models import (
    ConsensusResult,
    GoldScore,
    MembershipEvent,
    QualityPolicy,
    RaterQuality,
)
from annotation.quality.selectors import item_consensus, qualification_state
from annotation.quality.services.gold import (
    gold_answer_score,
    gold_items_promote,
    item_gold_set,
    judgment_gold_score,
)
from annotation.quality.services.membership import rater_pause, rater_resume
from annotation.quality.services.policy import quality_policy_set
from annotation.quality.services.results import campaign_results_compute
from annotation.quality.services.runs import aggregation_run_execute
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db

QUESTIONS = [
    {"key": "ok", "type": "binary", "label": "OK?"},
    {"key": "score", "type": "likert", "label": "Score"},
    {"key": "note", "type": "text", "label": "Note", "required": False},
]


def test_item_gold_set_validates_answers_against_the_schema_and_stores_nothing_on_error():
    camp = f.campaign(questions=QUESTIONS)
    (item,) = f.items(camp, 1)

    for answers, expected in [
        ({}, {"gold_answers": ["Give the known answers as {question key: answer}."]}),
        ({"ok": "yes"}, {"gold_answers.ok": ["Must be true or false."]}),
        ({"score": 7}, {"gold_answers.score": ["Must be an integer from 1 to 5, not 7."]}),
        ({"nope": 1}, {"gold_answers.nope": ["Unknown question 'nope'."]}),
        ({"note": "x"}, {"gold_answers.note": ["A text question has no known answer to score."]}),
    ]:
        with pytest.raises(ValidationError) as error:
            item_gold_set(item=item, gold_answers=answers)
        assert error.value.message_dict == expected

    item.refresh_from_db()
    assert (item.is_gold, item.gold_answers) == (False, None)


def test_gold_judgments_are_scored_per_question():
    camp = f.campaign(questions=QUESTIONS)
    (item,) = f.items(camp, 1)
    a, b, c = f.raters(3)
    right = f.judge(item, a, {"ok": True, "score": 4})
    half = f.judge(item, b, {"ok": True, "score": 2})
    f.judge(item, c, {}, skipped=True)

    item_gold_set(item=item, gold_answers={"ok": True, "score": 4})

    scores = {s.judgment_id: (s.score, s.details) for s in GoldScore.objects.all()}
    assert scores == {
        right.pk: (1.0, {"ok": True, "score": True}),
        half.pk: (0.5, {"ok": True, "score": False}),
    }


def test_binary_true_does_not_match_likert_one():
    schema = [{"key": "x", "type": "likert", "options": []}]
    assert gold_answer_score(schema, {"x": 1}, {"x": True}) == (0.0, {"x": False})


def _policy(camp, **values):
    return quality_policy_set(campaign=camp, **values)


def test_policy_out_of_range_is_refused_with_the_reason_and_nothing_stored():
    camp = f.campaign(questions=QUESTIONS)

    with pytest.raises(ValidationError) as error:
        _policy(
            camp,
            min_gold_accuracy=1.5,
            max_fast_share=-0.1,
            min_gold_judgments=0,
            speed_floor_seconds=900,
            consensus_method="mean",
            confidence_target=True,
        )

    assert error.value.message_dict == {
        "min_gold_accuracy": ["Must be a number from 0 to 1, not 1.5."],
        "max_fast_share": ["Must be a number from 0 to 1, not -0.1."],
        "confidence_target": ["Must be a number from 0 to 1, not True."],
        "min_gold_judgments": ["Must be a whole number from 1 to 1000, not 0."],
        "speed_floor_seconds": ["Must be a number of seconds from 0 to 600, not 900."],
    }
    assert not QualityPolicy.objects.exists()
    binary_only = f.campaign(questions=QUESTIONS[:1])
    with pytest.raises(ValidationError) as error:
        _policy(binary_only, consensus_method="mean")
    assert error.value.message_dict == {
        "consensus_method": [
            "Method 'mean' fits none of the campaign's questions (methods that fit: dawid_skene, "
            "glad, mace, majority)."
        ]
    }
    assert not QualityPolicy.objects.exists()


def _gold_campaign(n_gold=6, n_plain=4):
    camp = f.campaign(questions=QUESTIONS[:1], overlap=2, max_overlap=4, gold_rate=0.2)
    gold = f.items(camp, n_gold, gold={i: {"ok": True} for i in range(n_gold)})
    plain = f.items(camp, n_plain)
    return camp, gold, plain


def test_rater_below_gold_threshold_is_paused_with_reason_and_judgments_excluded():
    # given a careful rater and a careless one, five gold items each
    camp, gold, plain = _gold_campaign()
    _policy(camp, min_gold_judgments=5, min_gold_accuracy=0.7)
    good, bad = f.raters(2, campaign=camp)
    for item in gold[:5]:
        f.judge(item, good, {"ok": True})
        f.judge(item, bad, {"ok": False})
    for item in plain:
        f.judge(item, good, {"ok": True})
        f.judge(item, bad, {"ok": False})

    # when the results are computed
    summary = campaign_results_compute(campaign=camp, methods=["majority"])

    # then
    assert summary["paused"] == [bad.pk]
    membership = CampaignMembership.objects.get(campaign=camp, rater=bad)
    assert membership.status == "paused"
    assert membership.paused_reason == (
        "Gold accuracy 0% on 5 gold item(s) is below the campaign's 70%."
    )
    assert Judgment.objects.filter(rater=bad, excluded=True).count() == 9
    assert Judgment.objects.filter(rater=good, excluded=True).count() == 0
    assert [i.judgment_count for i in Item.objects.filter(pk__in=[p.pk for p in plain])] == [1] * 4
    event = MembershipEvent.objects.get(membership=membership)
    assert (event.action, event.cause, event.excluded_judgments, event.actor) == (
        "paused",
        "gold",
        9,
        None,
    )
    quality = RaterQuality.objects.get(campaign=camp, rater=bad)
    assert (quality.n_gold, quality.gold_accuracy, quality.n_judgments) == (5, 0.0, 9)
    assert RaterQuality.objects.get(campaign=camp, rater=good).gold_accuracy == 1.0


def test_resume_restores_excluded_judgments_and_starts_a_fresh_window():
    camp, gold, plain = _gold_campaign()
    _policy(camp, min_gold_judgments=5, min_gold_accuracy=0.7)
    (bad,) = f.raters(1, campaign=camp)
    for item in gold[:5]:
        f.judge(item, bad, {"ok": False})
    f.judge(plain[0], bad, {"ok": False})
    campaign_results_compute(campaign=camp, methods=["majority"])
    curator = f.raters(1, prefix="cur")[0]

    event = rater_resume(campaign=camp, rater_id=bad.pk, actor=curator, reason="Talked it through.")

    assert (event.action, event.excluded_judgments, event.actor) == ("resumed", 6, curator)
    assert CampaignMembership.objects.get(campaign=camp, rater=bad).status == "active"
    assert not Judgment.objects.filter(rater=bad, excluded=True).exists()
    assert Item.objects.get(pk=plain[0].pk).judgment_count == 1
    # The old gold answers no longer pause them: the window starts at the resume.
    assert campaign_results_compute(campaign=camp, methods=["majority"])["paused"] == []
    with pytest.raises(ServiceConflict):
        rater_resume(campaign=camp, rater_id=bad.pk)


def test_too_fast_raters_are_paused():
    camp = f.campaign(questions=QUESTIONS[:1], overlap=1)
    _policy(camp, speed_floor_seconds=1.0, max_fast_share=0.5, min_speed_judgments=4)
    fast, slow = f.raters(2, campaign=camp)
    items = f.items(camp, 8)
    for item in items[:4]:
        f.judge(item, fast, {"ok": True}, seconds=0.4)
    for item in items[4:]:
        f.judge(item, slow, {"ok": True}, seconds=0.4 if item == items[4] else 3.0)

    assert campaign_results_compute(campaign=camp, methods=["majority"])["paused"] == [fast.pk]
    assert CampaignMembership.objects.get(rater=fast).paused_reason == (
        "100% of 4 judgments took under 1 s (the campaign allows 50%)."
    )
    quality = RaterQuality.objects.get(rater=slow)
    assert (quality.median_seconds, quality.fast_share) == (3.0, 0.25)


def test_each_raters_median_seconds_is_the_middle_or_the_mean_of_the_two_middle():
    camp = f.campaign(questions=QUESTIONS[:1], overlap=1)
    even, odd, one = f.raters(3, campaign=camp)
    items = f.items(camp, 8)
    for item, seconds in zip(items[:4], (5.0, 1.0, 4.0, 2.0), strict=True):
        f.judge(item, even, {"ok": True}, seconds=seconds)
    for item, seconds in zip(items[4:7], (9.0, 0.5, 2.5), strict=True):
        f.judge(item, odd, {"ok": False}, seconds=seconds)
    f.judge(items[7], one, {"ok": True}, seconds=7.25)

    campaign_results_compute(campaign=camp, methods=["majority"])
    assert dict(
        RaterQuality.objects.filter(campaign=camp).values_list("rater_id", "median_seconds")
    ) == {even.pk: 3.0, odd.pk: 2.5, one.pk: 7.25}


def test_manual_pause_needs_a_reason_and_a_membership():
    camp = f.campaign(questions=QUESTIONS[:1])
    (member,) = f.raters(1, campaign=camp)
    (stranger,) = f.raters(1)

    with pytest.raises(ValidationError) as error:
        rater_pause(campaign=camp, rater_id=member.pk, reason="  ")
    assert error.value.message_dict == {"reason": ["Say why the rater is paused."]}
    with pytest.raises(ValidationError) as error:
        rater_pause(campaign=camp, rater_id=stranger.pk, reason="spam")
    assert error.value.message_dict == {
        "rater": [f"Rater {stranger.pk} is not a member of campaign {camp.name!r}."]
    }
    assert not MembershipEvent.objects.exists()


def test_qualification_gate_pauses_until_the_rater_passes():
    qualifier, qual_gold, _ = _gold_campaign(n_gold=3, n_plain=1)
    camp = f.campaign(questions=QUESTIONS[:1])
    (newcomer,) = f.raters(1, campaign=camp)

    with pytest.raises(ValidationError) as error:
        _policy(camp, qualification_campaign=qualifier, qualification_min_gold=5)
    assert error.value.message_dict == {
        "qualification_campaign": [
            f"Campaign {qualifier.name!r} has 3 gold item(s); raters must answer 5 to qualify."
        ]
    }
    _policy(
        camp,
        qualification_campaign=qualifier,
        qualification_min_gold=3,
        qualification_min_accuracy=0.6,
    )

    membership = CampaignMembership.objects.get(campaign=camp, rater=newcomer)
    assert membership.status == "paused"
    assert membership.paused_reason == (
        f"Pass the qualification campaign {qualifier.name!r} first: 3 gold items at 60% or "
        "better (so far 0)."
    )
    # when the newcomer answers the qualification campaign's gold items
    for index, item in enumerate(qual_gold):
        judgment = f.judge(item, newcomer, {"ok": index < 2})
        judgment_gold_score(judgment_id=judgment.pk)

    state = qualification_state(campaign=camp, rater_id=newcomer.pk)
    assert (state.passed, state.n_gold, state.accuracy) == (True, 3, pytest.approx(2 / 3))
    assert CampaignMembership.objects.get(campaign=camp, rater=newcomer).status == "active"


def test_raters_added_after_the_requirement_wait_for_the_qualification():
    from annotation.quality.services.membership import campaign_membership_set, raters_add

    qualifier, qual_gold, _ = _gold_campaign(n_gold=3, n_plain=1)
    camp = f.campaign(questions=QUESTIONS[:1])
    _policy(camp, qualification_campaign=qualifier, qualification_min_gold=3)
    # when two raters join afterwards, one by the bulk path and one by the single path
    bulk, single = f.raters(2)
    assert raters_add(campaign=camp, raters=[bulk]) == 1
    membership = campaign_membership_set(campaign=camp, rater=single)
    # then neither can be given an item before passing
    statuses = dict(
        CampaignMembership.objects.filter(campaign=camp).values_list("rater_id", "status")
    )
    assert statuses == {bulk.pk: "paused", single.pk: "paused"}
    assert membership.status == "paused"
    assert membership.paused_reason.startswith(
        f"Pass the qualification campaign {qualifier.name!r} first"
    )


def test_adaptive_overlap_raises_low_confidence_items_up_to_the_maximum():
    camp = f.campaign(questions=QUESTIONS[:1], overlap=2, max_overlap=3)
    _policy(camp, confidence_target=0.8)
    split, agreed, open_item = f.items(camp, 3)
    a, b, c = f.raters(3)
    f.judge(split, a, {"ok": True})
    f.judge(split, b, {"ok": False})
    f.judge(agreed, a, {"ok": True})
    f.judge(agreed, b, {"ok": True})
    f.judge(open_item, a, {"ok": True})
    Item.objects.filter(pk=open_item.pk).update(overlap_target=2)

    assert campaign_results_compute(campaign=camp, methods=["majority"])["overlap_raised"] == 1
    targets = dict(Item.objects.filter(campaign=camp).values_list("pk", "overlap_target"))
    assert targets == {split.pk: 3, agreed.pk: 2, open_item.pk: 2}

    f.judge(split, c, {"ok": True})  # 2 of 3 agree: 0.67, still under 0.8, but at the maximum
    campaign_results_compute(campaign=camp, methods=["majority"])
    assert Item.objects.get(pk=split.pk).overlap_target == 3


def test_stored_results_are_what_item_consensus_reads_and_a_rerun_replaces_them():
    camp = f.campaign(questions=QUESTIONS[:2], overlap=3)
    (item,) = f.items(camp, 1)
    r = f.raters(3)
    for rater, score in zip(r, [4, 4, 2], strict=True):
        f.judge(item, rater, {"ok": True, "score": score})
    campaign_results_compute(campaign=camp, methods=["majority", "mean", "median"])
    f.judge(f.items(camp, 1)[0], r[0], {"ok": False, "score": 1})

    stored = item_consensus(campaign_id=camp.pk, question_key="score", method="mean")

    assert list(stored) == [item.pk]  # the newer judgment waits for the next run
    assert stored[item.pk].label == 3
    assert stored[item.pk].mean == pytest.approx(10 / 3)
    assert stored[item.pk].median == 4.0
    assert stored[item.pk].confidence == pytest.approx(1 - (8 / 9) / 2)
    campaign_results_compute(campaign=camp, methods=["majority"])
    assert (
        ConsensusResult.objects.filter(campaign=camp, question_key="ok", method="majority").count()
        == 2
    )


def test_promote_near_certain_items_to_gold():
    camp = f.campaign(questions=QUESTIONS[:1], overlap=3)
    sure, unsure = f.items(camp, 2)
    r = f.raters(3)
    for rater in r:
        f.judge(sure, rater, {"ok": False})
    for rater, v in zip(r, [True, False, True], strict=True):
        f.judge(unsure, rater, {"ok": v})

    with pytest.raises(ValidationError) as error:
        gold_items_promote(campaign=camp, question_key="ok")
    assert error.value.message_dict == {
        "method": ["No stored majority results for 'ok'; compute the campaign's results first."]
    }
    campaign_results_compute(campaign=camp, methods=["majority"])

    assert gold_items_promote(campaign=camp, question_key="ok", min_confidence=0.9) == [sure.pk]
    sure.refresh_from_db()
    assert (sure.is_gold, sure.gold_answers) == (True, {"ok": False})
    assert GoldScore.objects.filter(judgment__item=sure).count() == 3


def test_excluded_judgments_before_the_window_stay_counted_after_a_resume():
    camp, gold, plain = _gold_campaign()
    (rater,) = f.raters(1, campaign=camp)
    old = f.judge(plain[0], rater, {"ok": True}, at=timezone.now() - timedelta(days=2))
    rater_pause(campaign=camp, rater_id=rater.pk, reason="checking")
    rater_resume(campaign=camp, rater_id=rater.pk)
    f.judge(plain[1], rater, {"ok": True})

    event = rater_pause(campaign=camp, rater_id=rater.pk, reason="again")

    assert event.excluded_judgments == 1
    assert not Judgment.objects.get(pk=old.pk).excluded


def test_a_run_that_breaks_ends_failed_with_the_reason_and_a_second_execution_does_nothing():
    from annotation.quality.models import AggregationRun

    camp = f.campaign(questions=QUESTIONS[:1])
    run = AggregationRun.objects.create(campaign=camp, trigger="on_demand", methods=["median"])

    aggregation_run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error == (
        "ValidationError: {'methods': [\"Method 'median' fits none of the campaign's questions "
        '(types: binary)."]}'
    )
    assert aggregation_run_execute(run_id=run.pk) is None


def test_the_periodic_entry_is_scheduled(settings):
    from annotation.quality import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["quality-aggregate-periodic"]
    assert entry["task"] == tasks.aggregate_periodic.name
    # A new judgment reaches the results within a minute: checked every 30 s.
    assert entry["schedule"] == 30.0
