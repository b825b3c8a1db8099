"""Single campaigns' items from a selection, inserted set-based; the campaign item limit."""

import threading
import uuid

import psycopg2
import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings

from annotation.models import Campaign, Item, ItemCandidate, Judgment
from annotation.services.campaigns import campaign_close, campaign_create
from annotation.services.items import (
    _single_items_insert_with_orm,
    campaign_items_add,
    campaign_items_from_selection,
    single_creation_key,
)
from annotation.services.rating import Submission, rating_step
from generation.models import Candidate
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db


def _stickers(version, n: int) -> list[int]:
    """``n`` sticker rows of ``version`` (no files: nothing here serves them), ids in order."""
    return [c.pk for c in f.candidates(n, model_version=version)]


def _by_creation(campaign) -> list[int]:
    """The campaign's candidates in the order their items were created (item id)."""
    return list(
        ItemCandidate.objects.filter(item__campaign=campaign)
        .order_by("item_id")
        .values_list("candidate_id", flat=True)
    )


def _made(campaign) -> tuple[list, list]:
    """The campaign's links (candidate, position, side), and its items' distinct settings."""
    links = sorted(
        ItemCandidate.objects.filter(item__campaign=campaign).values_list(
            "candidate_id", "position", "side"
        )
    )
    settings = list(
        Item.objects.filter(campaign=campaign)
        .values_list("is_gold", "gold_answers", "overlap_target", "judgment_count", "group_key")
        .order_by()
        .distinct()
    )
    return links, settings


def test_one_item_per_selected_candidate_with_the_campaign_overlap():
    version = f.model_version("base")
    ids = _stickers(version, 5)
    _stickers(f.model_version("other"), 2)
    campaign = campaign_create(name="one by one", kind="single", overlap=2, max_overlap=3)
    items = campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=3)
    assert [i.candidate_ids_in_order() for i in items] == [[c] for c in ids]
    assert _made(campaign=campaign) == ([(c, 0, "") for c in ids], [(False, None, 2, 0, "")])
    assert Item.objects.count() == 5
    assert Campaign.objects.get(pk=campaign.pk).selection == {
        "batches": [],
        "model_versions": [version.pk],
        "prompt_tags": [],
        "candidate_kind": None,
        "group_size": None,
        "seed": 3,
    }
    # Again: nothing new. With two more candidates: those two only.
    with pytest.raises(ValidationError) as info:
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk])
    assert info.value.message_dict == {
        "selection": [
            "The selection makes no new items. Every candidate it groups is in the campaign "
            "already."
        ]
    }
    more = _stickers(version, 2)
    items = campaign_items_from_selection(campaign=campaign, model_versions=[version.pk])
    assert [i.candidate_ids_in_order() for i in items] == [[c] for c in more]
    assert sorted(_by_creation(campaign)) == ids + more


def test_a_seed_fixes_the_creation_order_and_it_does_not_follow_the_candidates():
    version = f.model_version("base")
    ids = _stickers(version, 30)
    first, second, other = (
        campaign_create(name=name, kind="single") for name in ("first", "second", "other")
    )
    for campaign, seed in ((first, 17), (second, 17), (other, 18)):
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=seed)
    expected = sorted(ids, key=lambda c: single_creation_key(17, c))
    assert _by_creation(first) == _by_creation(second) == expected
    assert expected != ids
    assert _by_creation(other) == sorted(ids, key=lambda c: single_creation_key(18, c))
    assert _by_creation(other) != expected


def test_the_orm_form_for_sqlite_makes_the_same_items_in_the_same_order():
    # make run's SQLite cannot run the set-based statement; its form runs here on PostgreSQL
    # (tests/e2e/test_make_run.py runs it on SQLite) and must agree with the statement's.
    version = f.model_version("base")
    ids = _stickers(version, 30)
    by_sql = campaign_create(name="by sql", kind="single", overlap=2, max_overlap=3)
    by_orm = campaign_create(name="by orm", kind="single", overlap=2, max_overlap=3)
    campaign_items_from_selection(campaign=by_sql, model_versions=[version.pk], seed=5)
    made = _single_items_insert_with_orm(campaign=by_orm, candidate_ids=list(reversed(ids)), seed=5)
    assert (
        _by_creation(by_orm)
        == _by_creation(by_sql)
        == sorted(ids, key=lambda c: single_creation_key(5, c))
    )
    assert [item.candidate_ids_in_order() for item in made] == [[c] for c in ids]
    assert _made(campaign=by_orm) == ([(c, 0, "") for c in ids], [(False, None, 2, 0, "")])


def test_over_the_item_limit_is_400_naming_it_and_stores_nothing(api, curator):
    version = f.model_version("base")
    _stickers(version, 4)
    campaign = campaign_create(name="capped", kind="single")
    client = api(curator)
    url = f"/api/campaigns/{campaign.pk}/items/from-selection/"
    with override_settings(CAMPAIGN_MAX_ITEMS=3):
        refused = client.post(url, {"model_versions": [version.pk], "seed": 1}, format="json")
    assert (refused.status_code, refused.json()) == (
        400,
        {
            "items": [
                "The campaign would hold 4 items (0 now, 4 new); the limit is 3 items "
                "(STICKERLOOP_CAMPAIGN_MAX_ITEMS)."
            ]
        },
    )
    assert (Item.objects.count(), ItemCandidate.objects.count()) == (0, 0)
    assert Campaign.objects.get(pk=campaign.pk).selection == {}
    with override_settings(CAMPAIGN_MAX_ITEMS=4):
        made = client.post(url, {"model_versions": [version.pk], "seed": 1}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["created"] == 4
    assert sorted(made.json()["item_ids"]) == sorted(Item.objects.values_list("id", flat=True))


def test_the_limit_counts_the_items_a_campaign_holds_whatever_made_them():
    version = f.model_version("base")
    ids = _stickers(version, 4)
    pair = campaign_create(name="pairs", kind="pair")
    single = campaign_create(name="singles", kind="single")
    candidates = list(Candidate.objects.filter(pk__in=ids).order_by("id"))
    with override_settings(CAMPAIGN_MAX_ITEMS=2):
        campaign_items_add(campaign=single, candidate_groups=[[candidates[0]], [candidates[1]]])
        with pytest.raises(ValidationError) as single_info:
            campaign_items_from_selection(campaign=single, model_versions=[version.pk])
        with pytest.raises(ValidationError) as pair_info:
            campaign_items_add(
                campaign=pair,
                candidate_groups=[candidates[0:2], candidates[1:3], candidates[2:4]],
            )
    assert single_info.value.message_dict == {
        "items": [
            "The campaign would hold 4 items (2 now, 2 new); the limit is 2 items "
            "(STICKERLOOP_CAMPAIGN_MAX_ITEMS)."
        ]
    }
    assert pair_info.value.message_dict == {
        "items": [
            "The campaign would hold 3 items (0 now, 3 new); the limit is 2 items "
            "(STICKERLOOP_CAMPAIGN_MAX_ITEMS)."
        ]
    }
    assert Item.objects.count() == 2


@pytest.mark.postgresql
def test_a_failure_part_way_leaves_nothing():
    version = f.model_version("base")
    ids = _stickers(version, 6)
    campaign = campaign_create(name="broken", kind="single")
    # The database refuses the link of the last candidate, after the items and the other links
    # went in within the same statement.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_link() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.candidate_id = {ids[-1]} THEN RAISE EXCEPTION 'refused'; END IF;"
            " RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_link BEFORE INSERT ON annotation_itemcandidate"
            " FOR EACH ROW EXECUTE FUNCTION refuse_link()"
        )
    with pytest.raises(DatabaseError, match="refused"):
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=5)
    assert (Item.objects.count(), ItemCandidate.objects.count()) == (0, 0)
    assert Campaign.objects.get(pk=campaign.pk).selection == {}


@pytest.mark.postgresql
def test_item_and_link_ids_are_drawn_a_thousand_at_a_time():
    """Migration 0006: numbering a 10,000,000-item campaign one locked sequence call per id cost
    30 s; a connection's ids still increase, which the creation order relies on."""
    version = f.model_version("base")
    _stickers(version, 4)
    campaign = campaign_create(name="numbered", kind="single")
    items = campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=2)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sequencename, cache_size FROM pg_sequences"
            " WHERE sequencename IN ('annotation_item_id_seq', 'annotation_itemcandidate_id_seq')"
            " ORDER BY sequencename"
        )
        assert cursor.fetchall() == [
            ("annotation_item_id_seq", 1000),
            ("annotation_itemcandidate_id_seq", 1000),
        ]
    # One statement on one connection: the links were numbered in the items' order.
    assert len(items) == 4
    link_ids = list(
        ItemCandidate.objects.filter(item__campaign=campaign)
        .order_by("item_id")
        .values_list("id", flat=True)
    )
    assert link_ids == sorted(set(link_ids))


def _locked_elsewhere(candidate_ids: list[int]) -> list[int]:
    """Which of the candidates another connection finds locked against a delete."""
    other = psycopg2.connect(**connection.get_connection_params())
    locked = []
    try:
        with other.cursor() as cursor:
            for candidate_id in candidate_ids:
                try:
                    cursor.execute(
                        "SELECT id FROM generation_candidate WHERE id = %s FOR UPDATE NOWAIT",
                        [candidate_id],
                    )
                except psycopg2.errors.LockNotAvailable:
                    locked.append(candidate_id)
                other.rollback()
    finally:
        other.close()
    return locked


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_the_selected_candidates_are_locked_from_the_insert_to_the_commit():
    """The statement locks what it links before the foreign-key checks at commit would (see
    ``_CANDIDATES_LOCKED_SQL``): a delete of a selected candidate waits for the items."""
    version = f.model_version("base")
    ids = _stickers(version, 3)
    others = _stickers(f.model_version("other"), 2)
    campaign = campaign_create(name="locked", kind="single")
    with transaction.atomic():
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=4)
        assert _locked_elsewhere(ids + others) == ids
    assert _locked_elsewhere(ids + others) == []
    assert sorted(_by_creation(campaign)) == ids


def _rate_one(campaign_id: int, rater, outcome: dict) -> None:
    """One rater's lease and judgment, on its own connection, giving up on a lock after 5 s."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        [item_id] = rating_step(campaign_id=campaign_id, rater=rater, fetch=1).item_ids
        submission = Submission(
            item_id=item_id, client_id=uuid.uuid4(), seconds_on_item=1.0, answers={"aligned": True}
        )
        judged = rating_step(campaign_id=campaign_id, rater=rater, submission=submission)
        outcome["judged"] = judged.judgment.item_id
    except Exception as exc:
        outcome["error"] = repr(exc)
    finally:
        connection.close()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_raters_keep_rating_while_items_are_added_to_their_campaign():
    """Adding items locks the campaign against its other writers only: each judgment's and
    lease's foreign key to the campaign is checked at commit with a lock that a ``FOR UPDATE``
    of the campaign row would make wait for the items (``campaign_lock``)."""
    rater = f.rater()
    campaign = f.running_campaign(raters=[rater], n_items=1)
    [first] = Item.objects.filter(campaign=campaign).values_list("pk", flat=True)
    version = f.model_version("more")
    ids = _stickers(version, 3)
    outcome: dict = {}
    with transaction.atomic():
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=2)
        rater_thread = threading.Thread(target=_rate_one, args=(campaign.pk, rater, outcome))
        rater_thread.start()
        rater_thread.join(30)
        assert outcome == {"judged": first}
    assert sorted(_by_creation(campaign)[1:]) == ids
    assert list(Judgment.objects.values_list("item_id", flat=True)) == [first]


def test_a_closed_campaign_takes_no_items():
    version = f.model_version("base")
    _stickers(version, 2)
    campaign = campaign_create(name="done", kind="single")
    campaign_close(campaign=campaign)
    with pytest.raises(ServiceConflict, match="'done' is closed"):
        campaign_items_from_selection(campaign=campaign, model_versions=[version.pk])
    assert Item.objects.count() == 0


@pytest.mark.postgresql
def test_queries_do_not_grow_with_the_candidates(django_assert_num_queries):
    for name, n in (("small", 3), ("large", 300)):
        version = f.model_version(name)
        _stickers(version, n)
        campaign = campaign_create(name=name, kind="single")
        # Savepoint and release around the service, the campaign lock, the count of new
        # candidates, the campaign's items (limit), the insert, the selection.
        with django_assert_num_queries(7):
            campaign_items_from_selection(campaign=campaign, model_versions=[version.pk], seed=1)
        assert Item.objects.filter(campaign=campaign).count() == n


def test_the_campaign_page_says_how_many_items_it_added_or_why_none(client, curator):
    version = f.model_version("base")
    _stickers(version, 3)
    campaign = campaign_create(name="paged", kind="single")
    client.force_login(curator)
    url = f"/campaigns/{campaign.pk}/items/"
    with override_settings(CAMPAIGN_MAX_ITEMS=2):
        refused = client.post(url, {"model_versions": [version.pk]}, follow=True)
    assert [str(m) for m in refused.context["messages"]] == [
        "The campaign would hold 3 items (0 now, 3 new); the limit is 2 items "
        "(STICKERLOOP_CAMPAIGN_MAX_ITEMS)."
    ]
    assert Item.objects.count() == 0
    added = client.post(url, {"model_versions": [version.pk]}, follow=True)
    assert [str(m) for m in added.context["messages"]] == ["3 item(s) added."]
    assert Item.objects.count() == 3
