"""Item loads: selections too large for a request, added by a worker; the request's limit."""

from datetime import timedelta

import psycopg2
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from annotation import tasks
from annotation.models import Item, ItemLoad, LoadStatus
from annotation.services.campaigns import campaign_close, campaign_create
from annotation.services.item_loads import (
    item_load_execute,
    item_load_request,
    item_loads_requeue,
)
from annotation.services.items import campaign_items_from_selection
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db


def _stickers(version, n: int) -> list[int]:
    return [c.pk for c in f.candidates(n, model_version=version)]


def _load(load: ItemLoad) -> tuple:
    load.refresh_from_db()
    return load.status, load.items_created, load.error


def test_a_load_adds_the_selections_items_as_a_request_would():
    version = f.model_version("base")
    ids = _stickers(version, 4)
    by_load = campaign_create(name="by load", kind="single")
    in_request = campaign_create(name="in request", kind="single")
    load = item_load_request(campaign=by_load, model_versions=[version.pk], seed=3)
    assert (load.status, load.selection) == (
        "queued",
        {
            "batches": [],
            "model_versions": [version.pk],
            "prompt_tags": [],
            "candidate_kind": None,
            "group_size": None,
            "seed": 3,
        },
    )
    assert Item.objects.count() == 0

    item_load_execute(load_id=load.pk)

    assert _load(load) == ("succeeded", 4, "")
    assert load.started_at <= load.finished_at
    campaign_items_from_selection(campaign=in_request, model_versions=[version.pk], seed=3)

    def order(campaign) -> list[int]:
        return list(
            Item.objects.filter(campaign=campaign)
            .order_by("pk")
            .values_list("item_candidates__candidate_id", flat=True)
        )

    assert sorted(order(by_load)) == ids
    assert order(by_load) == order(in_request)


def test_a_load_run_twice_adds_its_items_once():
    version = f.model_version("base")
    _stickers(version, 3)
    campaign = campaign_create(name="twice", kind="single")
    load = item_load_request(campaign=campaign, model_versions=[version.pk])
    assert item_load_execute(load_id=load.pk).pk == load.pk
    assert item_load_execute(load_id=load.pk) is None
    assert _load(load) == ("succeeded", 3, "")
    assert Item.objects.filter(campaign=campaign).count() == 3


@pytest.mark.parametrize(
    ("limit", "existing", "error"),
    [
        (10, False, "The selection matches no candidates."),
        (
            2,
            True,
            "The campaign would hold 3 items (0 now, 3 new); the limit is 2 items "
            "(STICKERLOOP_CAMPAIGN_MAX_ITEMS).",
        ),
    ],
)
def test_a_load_that_cannot_add_its_items_fails_saying_why_and_adds_none(limit, existing, error):
    version = f.model_version("base")
    if existing:
        _stickers(version, 3)
    campaign = campaign_create(name="refused", kind="single")
    load = item_load_request(campaign=campaign, model_versions=[version.pk])
    with override_settings(CAMPAIGN_MAX_ITEMS=limit):
        item_load_execute(load_id=load.pk)
    assert _load(load) == ("failed", None, error)
    assert Item.objects.count() == 0


def test_a_campaign_closed_after_the_request_fails_the_load():
    version = f.model_version("base")
    _stickers(version, 2)
    campaign = campaign_create(name="closing", kind="single")
    load = item_load_request(campaign=campaign, model_versions=[version.pk])
    campaign_close(campaign=campaign)
    item_load_execute(load_id=load.pk)
    assert _load(load) == ("failed", None, "Campaign 'closing' is closed.")
    assert Item.objects.count() == 0


def test_a_request_with_wrong_fields_or_a_closed_campaign_queues_nothing():
    single = campaign_create(name="single", kind="single")
    with pytest.raises(ValidationError) as refused:
        item_load_request(campaign=single, model_versions=[1], group_size=3)
    assert refused.value.message_dict == {
        "group_size": ["Only best-of-N and set campaigns take a group size."]
    }
    with pytest.raises(ValidationError) as refused:
        item_load_request(campaign=single)
    assert refused.value.message_dict == {
        "selection": ["Choose batches, model versions or prompt tags."]
    }
    campaign_close(campaign=single)
    with pytest.raises(ServiceConflict, match="'single' is closed"):
        item_load_request(campaign=single, model_versions=[1])
    assert ItemLoad.objects.count() == 0


def test_the_database_keeps_a_count_for_succeeded_loads_only():
    campaign = campaign_create(name="counts", kind="single")
    for status, count in (("succeeded", None), ("failed", 3), ("queued", 0)):
        with pytest.raises(IntegrityError), transaction.atomic():
            ItemLoad.objects.create(
                campaign=campaign, selection={}, status=status, items_created=count
            )
    assert ItemLoad.objects.count() == 0


def test_the_api_queues_a_load_and_shows_it(api, curator):
    version = f.model_version("base")
    _stickers(version, 3)
    campaign = campaign_create(name="api", kind="single")
    client = api(curator)
    queued = client.post(
        f"/api/campaigns/{campaign.pk}/items/load/",
        {"model_versions": [version.pk], "seed": 5},
        format="json",
    )
    assert queued.status_code == 202, queued.json()
    [load] = ItemLoad.objects.all()
    assert queued["Location"] == (
        f"http://testserver/api/campaigns/{campaign.pk}/items/loads/{load.pk}/"
    )
    assert (queued.json()["id"], queued.json()["status"], queued.json()["items_created"]) == (
        load.pk,
        "queued",
        None,
    )
    assert load.requested_by == curator
    item_load_execute(load_id=load.pk)
    shown = client.get(f"/api/campaigns/{campaign.pk}/items/loads/{load.pk}/").json()
    assert (shown["status"], shown["items_created"], shown["error"]) == ("succeeded", 3, "")
    listed = client.get(f"/api/campaigns/{campaign.pk}/items/loads/").json()
    assert [row["id"] for row in listed] == [load.pk]
    other = campaign_create(name="other", kind="single")
    assert client.get(f"/api/campaigns/{other.pk}/items/loads/{load.pk}/").status_code == 404


def test_the_api_refuses_a_bad_load_and_stores_nothing(api, curator):
    campaign = campaign_create(name="bad", kind="single")
    response = api(curator).post(
        f"/api/campaigns/{campaign.pk}/items/load/", {"batches": ["x"]}, format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"batches": {"0": ["A valid integer is required."]}},
    )
    response = api(curator).post(f"/api/campaigns/{campaign.pk}/items/load/", {}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"selection": ["Choose batches, model versions or prompt tags."]},
    )
    assert ItemLoad.objects.count() == 0


def test_a_request_refuses_a_selection_larger_than_it_may_add(api, curator):
    version = f.model_version("base")
    _stickers(version, 3)
    campaign = campaign_create(name="sync", kind="single")
    url = f"/api/campaigns/{campaign.pk}/items/from-selection/"
    with override_settings(CAMPAIGN_SYNC_MAX_ITEMS=2):
        refused = api(curator).post(url, {"model_versions": [version.pk]}, format="json")
    assert (refused.status_code, refused.json()) == (
        400,
        {
            "selection": [
                "The selection holds 3 candidates; a request adds items from at most 2 "
                "(STICKERLOOP_CAMPAIGN_SYNC_MAX_ITEMS). Queue an item load instead: "
                f"POST /api/campaigns/{campaign.pk}/items/load/ with the same fields."
            ]
        },
    )
    assert (Item.objects.count(), ItemLoad.objects.count()) == (0, 0)
    with override_settings(CAMPAIGN_SYNC_MAX_ITEMS=3):
        added = api(curator).post(url, {"model_versions": [version.pk]}, format="json")
    assert (added.status_code, added.json()["created"]) == (201, 3)


def test_the_campaign_page_queues_a_large_selection_and_shows_the_load(client, curator):
    version = f.model_version("base")
    _stickers(version, 3)
    campaign = campaign_create(name="paged load", kind="single")
    client.force_login(curator)
    with override_settings(CAMPAIGN_SYNC_MAX_ITEMS=2):
        queued = client.post(
            f"/campaigns/{campaign.pk}/items/", {"model_versions": [version.pk]}, follow=True
        )
    [load] = ItemLoad.objects.all()
    assert [str(m) for m in queued.context["messages"]] == [
        f"Item load {load.pk} queued: a worker adds the selection's items, and this page shows "
        "when it is done."
    ]
    assert Item.objects.count() == 0
    assert list(queued.context["item_loads"]) == [load]
    item_load_execute(load_id=load.pk)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert '<span class="status status-succeeded">succeeded</span></td><td>3</td>' in page


@pytest.fixture
def sent(monkeypatch):
    """The load ids the item-load task is sent, once the sending transaction commits."""
    messages = []
    monkeypatch.setattr(tasks.item_load_run, "delay", lambda *a: messages.append(a))
    return messages


def _aged(load: ItemLoad, *, status: str, seconds: float) -> ItemLoad:
    """``load`` as if queued, and started where RUNNING, ``seconds`` ago."""
    then = timezone.now() - timedelta(seconds=seconds)
    started = then if status == LoadStatus.RUNNING else None
    ItemLoad.objects.filter(pk=load.pk).update(status=status, created_at=then, started_at=started)
    return load


@pytest.mark.postgresql
def test_the_sweep_sends_again_the_loads_no_worker_holds(
    settings, sent, django_capture_on_commit_callbacks
):
    settings.SWEEP_STALE_SECONDS, settings.SWEEP_QUEUED_SECONDS = 60, 900
    campaign = campaign_create(name="swept", kind="single")

    def load(status: str, seconds: float) -> int:
        made = item_load_request(campaign=campaign, model_versions=[1])
        return _aged(made, status=status, seconds=seconds).pk

    dead = load(LoadStatus.RUNNING, 61)
    lost = load(LoadStatus.QUEUED, 901)
    load(LoadStatus.RUNNING, 30)  # may be between its claim and its insert's lock
    load(LoadStatus.QUEUED, 100)  # its worker may not have taken it yet
    done = load(LoadStatus.QUEUED, 5000)
    ItemLoad.objects.filter(pk=done).update(status=LoadStatus.SUCCEEDED, items_created=1)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        requeued = item_loads_requeue()
    assert requeued == [dead, lost]
    assert sent == [(dead,), (lost,)]


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_a_load_whose_worker_holds_it(settings, sent):
    """A live load holds its row locked from its insert to its commit, however long that is."""
    settings.SWEEP_STALE_SECONDS = 60
    campaign = campaign_create(name="held", kind="single")
    held = _aged(
        item_load_request(campaign=campaign, model_versions=[1]),
        status=LoadStatus.RUNNING,
        seconds=600,
    )
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM annotation_itemload WHERE id = %s FOR UPDATE", [held.pk])
        sent.clear()
        assert item_loads_requeue() == []
        other.rollback()
        assert item_loads_requeue() == [held.pk]
        assert sent == [(held.pk,)]
    finally:
        other.close()
