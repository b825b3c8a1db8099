"""Leasing, submitting, skipping and undoing, with the step in SQL and from Python."""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import assignment
from annotation.models import Item, Judgment, Lease
from annotation.quality.services.membership import campaign_membership_set
from annotation.services.campaigns import campaign_close, campaign_pause
from annotation.services.items import campaign_items_add
from annotation.services.leases import lease_expire_sweep
from annotation.services.rating import (
    Submission,
    item_next_for_rater,
    item_skip,
    judgment_submit,
    judgment_undo,
    rating_step,
)
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db


def _submit(item, rater, answers=None, client_id=None, seconds=2.0):
    return judgment_submit(
        item=item,
        rater=rater,
        answers={"aligned": True} if answers is None else answers,
        client_id=client_id or uuid.uuid4(),
        seconds_on_item=seconds,
    )


def _state(campaign):
    return list(
        Item.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("judgment_count", "leased_count", "is_open")
    )


def test_next_leases_unseen_items_closest_to_completion_first(step_mode):
    a, b = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[a, b], n_items=4, overlap=2)
    items = list(Item.objects.filter(campaign=campaign).order_by("id"))
    # given: a judged item 3, so it is closest to completion
    first = item_next_for_rater(campaign=campaign, rater=a, count=1)
    assert first == [items[0]]
    _submit(items[0], a)
    # when
    got = item_next_for_rater(campaign=campaign, rater=b, count=3)
    # then: b gets the half-done item first, then the oldest untouched ones
    assert [i.pk for i in got] == [items[0].pk, items[1].pk, items[2].pk]
    # and a never gets item 0 again; items 1 and 2 still have a free slot each
    assert [i.pk for i in item_next_for_rater(campaign=campaign, rater=a, count=5)] == [
        items[1].pk,
        items[2].pk,
        items[3].pk,
    ]
    assert _state(campaign) == [(1, 1, False), (0, 2, False), (0, 2, False), (0, 1, True)]


def test_overlap_caps_leases_plus_judgments(step_mode):
    raters = [f.rater() for _ in range(3)]
    campaign = f.running_campaign(raters=raters, n_items=1, overlap=2)
    assert len(item_next_for_rater(campaign=campaign, rater=raters[0])) == 1
    assert len(item_next_for_rater(campaign=campaign, rater=raters[1])) == 1
    assert item_next_for_rater(campaign=campaign, rater=raters[2]) == []
    assert _state(campaign) == [(0, 2, False)]


def test_submit_stores_and_a_retry_returns_the_stored_judgment(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=2, overlap=2)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    client_id = uuid.uuid4()
    judgment = _submit(item, r, {"aligned": False, "missing": ["count"]}, client_id, 3.5)
    again = _submit(item, r, {"aligned": True}, client_id)
    assert again.pk == judgment.pk
    stored = Judgment.objects.get()
    assert (stored.answers, stored.seconds_on_item, stored.client_id, stored.campaign_id) == (
        {"aligned": False, "missing": ["count"]},
        3.5,
        client_id,
        campaign.pk,
    )
    assert _state(campaign) == [(1, 0, True), (0, 0, True)]
    assert Lease.objects.count() == 0


def test_a_client_id_reused_for_another_item_is_400(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=2)
    first, second = item_next_for_rater(campaign=campaign, rater=r, count=2)
    client_id = uuid.uuid4()
    _submit(first, r, client_id=client_id)
    with pytest.raises(ValidationError) as info:
        _submit(second, r, client_id=client_id)
    assert info.value.message_dict == {
        "client_id": [f"This client id was used for item {first.pk}, not {second.pk}."]
    }
    assert Judgment.objects.count() == 1


def test_submit_without_lease_is_refused(step_mode):
    r, other = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[r, other], n_items=1)
    item = Item.objects.get()
    with pytest.raises(PermissionDenied, match=f"You hold no lease on item {item.pk}."):
        _submit(item, r)
    outsider = f.rater()
    with pytest.raises(PermissionDenied, match="You are not a rater of campaign"):
        item_next_for_rater(campaign=campaign, rater=outsider)
    assert Judgment.objects.count() == 0
    assert _state(campaign) == [(0, 0, True)]


def test_bad_answers_store_nothing(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    with pytest.raises(ValidationError) as info:
        _submit(item, r, {"aligned": "maybe", "extra": 1})
    assert info.value.message_dict == {
        "answers.aligned": ["Must be true or false."],
        "answers.extra": ["Unknown question 'extra'."],
    }
    assert Judgment.objects.count() == 0
    assert _state(campaign) == [(0, 1, False)]


def test_closed_campaign_refuses_submits_with_409(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    campaign_close(campaign=campaign)
    with pytest.raises(ServiceConflict, match="is closed; nothing was stored"):
        _submit(item, r)
    assert Judgment.objects.count() == 0


def test_paused_campaign_takes_submits_but_hands_out_nothing(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=3)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    campaign_pause(campaign=campaign)
    result = rating_step(
        campaign_id=campaign.pk,
        rater=r,
        fetch=1,
        submission=Submission(
            item_id=item.pk, client_id=uuid.uuid4(), seconds_on_item=1.0, answers={"aligned": True}
        ),
    )
    assert (result.judgment is not None, result.item_ids, result.message) == (
        True,
        [],
        "The campaign is paused.",
    )
    with pytest.raises(ServiceConflict, match="is paused; no items are handed out"):
        item_next_for_rater(campaign=campaign, rater=r)


def test_paused_rater_gets_403_and_their_leases_go_back(step_mode):
    r, other = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[r, other], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    campaign_membership_set(
        campaign=campaign, rater=r, status="paused", reason="gold accuracy below 70%"
    )
    with pytest.raises(PermissionDenied) as info:
        item_next_for_rater(campaign=campaign, rater=r)
    assert str(info.value) == (
        f"Your work on campaign {campaign.name!r} is paused: gold accuracy below 70%"
    )
    with pytest.raises(PermissionDenied, match="is paused"):
        _submit(item, r)
    assert _state(campaign) == [(0, 0, True)]
    assert [i.pk for i in item_next_for_rater(campaign=campaign, rater=other)] == [item.pk]
    campaign_membership_set(campaign=campaign, rater=r, status="active")
    # r saw the item before the pause: it is not handed to them again.
    assert item_next_for_rater(campaign=campaign, rater=r) == []


def test_expired_leases_come_back(step_mode):
    a, b = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[a, b], n_items=1, lease_seconds=10)
    [item] = item_next_for_rater(campaign=campaign, rater=a)
    assert item_next_for_rater(campaign=campaign, rater=b) == []
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    # b finds the queue empty, which sweeps the expired lease: the item comes back.
    assert item_next_for_rater(campaign=campaign, rater=b) == [item]
    assert list(Lease.objects.order_by("id").values_list("rater_id", "released")) == [
        (a.pk, True),
        (b.pk, False),
    ]
    # a late submit from a on the released lease finds the item full: 409, nothing stored
    with pytest.raises(ServiceConflict, match="expired and the item has all its judgments"):
        _submit(item, a)
    _submit(item, b)
    assert _state(campaign) == [(1, 0, False)]


def test_late_submit_is_kept_while_the_item_has_room(step_mode):
    a = f.rater()
    campaign = f.running_campaign(raters=[a], n_items=1, overlap=2)
    [item] = item_next_for_rater(campaign=campaign, rater=a)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_expire_sweep(campaign_id=campaign.pk) == 1
    assert _state(campaign) == [(0, 0, True)]
    _submit(item, a)
    assert _state(campaign) == [(1, 0, True)]


def test_throttled_sweep_runs_on_next(step_mode, settings):
    settings.ANNOTATION_LEASE_SWEEP_SECONDS = 0
    a, b = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[a, b], n_items=2)
    first, _ = item_next_for_rater(campaign=campaign, rater=a, count=2)
    Lease.objects.filter(item=first).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert item_next_for_rater(campaign=campaign, rater=b) == [first]


def test_skip_is_stored_does_not_count_and_frees_the_item(step_mode):
    a, b = f.rater(), f.rater()
    campaign = f.running_campaign(raters=[a, b], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=a)
    skipped = item_skip(
        item=item,
        rater=a,
        reason="Cannot see it properly",
        client_id=uuid.uuid4(),
        seconds_on_item=4.0,
    )
    assert (skipped.skipped, skipped.skip_reason, skipped.answers) == (
        True,
        "Cannot see it properly",
        {},
    )
    assert _state(campaign) == [(0, 0, True)]
    assert item_next_for_rater(campaign=campaign, rater=a) == []
    assert item_next_for_rater(campaign=campaign, rater=b) == [item]
    with pytest.raises(ValidationError) as info:
        item_skip(item=item, rater=b, reason=" ", client_id=uuid.uuid4())
    assert info.value.message_dict == {"skip_reason": ["Say why you skip."]}


def test_undo_takes_back_the_last_judgment_and_leases_the_item_again(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=2)
    first, second = item_next_for_rater(campaign=campaign, rater=r, count=2)
    _submit(first, r, {"aligned": False, "missing": ["subject"]})
    undone = judgment_undo(campaign=campaign, rater=r)
    assert (undone.item_id, undone.answers) == (
        first.pk,
        {"aligned": False, "missing": ["subject"]},
    )
    assert Judgment.objects.count() == 0
    assert _state(campaign) == [(0, 1, False), (0, 1, False)]
    _submit(first, r, {"aligned": True})
    assert Judgment.objects.get().answers == {"aligned": True}


def test_undo_window(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    _submit(item, r)
    Judgment.objects.update(created_at=timezone.now() - timedelta(seconds=121))
    with pytest.raises(ServiceConflict, match="older than 120 s"):
        judgment_undo(campaign=campaign, rater=r)
    assert Judgment.objects.count() == 1


def test_gold_items_are_mixed_in_once_and_take_no_overlap(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=3, gold_rate=1.0)
    gold = campaign_items_add(
        campaign=campaign,
        candidate_groups=[[f.sticker()], [f.sticker()]],
        gold_answers=[{"aligned": True}, {"aligned": False}],
    )
    assert [g.gold_answers for g in gold] == [{"aligned": True}, {"aligned": False}]
    got = item_next_for_rater(campaign=campaign, rater=r, count=3)
    # gold rate 1: both gold items come first (oldest first), then a regular one once gold
    # runs out
    assert [i.pk for i in got][:2] == sorted(g.pk for g in gold)
    assert not got[2].is_gold
    for item in got:
        _submit(item, r)
    assert (
        list(
            Item.objects.filter(is_gold=True).values_list(
                "judgment_count", "leased_count", "is_open"
            )
        )
        == [(1, 0, False)] * 2
    )
    later = item_next_for_rater(campaign=campaign, rater=r, count=5)
    assert all(not i.is_gold for i in later) and len(later) == 2


def test_one_rater_s_pile_up_does_not_hide_the_fresh_items(step_mode, monkeypatch):
    """With overlap 3 and one rater, every judged item sits at level 1 ahead of the fresh ones;
    the level windows skip them (and the unbounded scan still finds items past a full window)."""
    monkeypatch.setattr(assignment, "PICK_WINDOW", 4)
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=12, overlap=3)
    items = list(Item.objects.filter(campaign=campaign).order_by("id"))
    for _ in range(10):
        [item] = item_next_for_rater(campaign=campaign, rater=r)
        _submit(item, r)
    assert [i.pk for i in item_next_for_rater(campaign=campaign, rater=r, count=5)] == [
        items[10].pk,
        items[11].pk,
    ]


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_step_is_one_query_in_the_database(settings, django_assert_num_queries):
    settings.ANNOTATION_RATE_STEP_IN_DATABASE = True
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=3)
    result = rating_step(campaign_id=campaign.pk, rater=r, fetch=1)  # warms the config
    submission = Submission(
        item_id=result.item_ids[0],
        client_id=uuid.uuid4(),
        seconds_on_item=1.0,
        answers={"aligned": True},
    )
    with django_assert_num_queries(1):
        result = rating_step(campaign_id=campaign.pk, rater=r, fetch=1, submission=submission)
    assert len(result.item_ids) == 1 and len(result.rows) == 1


def test_step_from_python_is_eight_statements(settings, django_assert_num_queries):
    settings.ANNOTATION_RATE_STEP_IN_DATABASE = False
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=3)
    result = rating_step(campaign_id=campaign.pk, rater=r, fetch=1)
    submission = Submission(
        item_id=result.item_ids[0],
        client_id=uuid.uuid4(),
        seconds_on_item=1.0,
        answers={"aligned": True},
    )
    with CaptureQueriesContext(connection) as queries:
        rating_step(campaign_id=campaign.pk, rater=r, fetch=1, submission=submission)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # membership lock, lease lock, lease delete, counters, judgment, pick, lease, counters
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == [
        "SELECT",
        "SELECT",
        "DELETE",
        "UPDATE",
        "INSERT",
        "SELECT",
        "INSERT",
        "UPDATE",
    ]
