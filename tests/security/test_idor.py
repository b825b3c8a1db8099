"""Object references over HTTP: a rater reaches only their own campaigns and their own work, and
an id of another kind of object (or of another campaign) answers 404, never 500 or someone
else's data."""

import uuid

import pytest
from rest_framework.test import APIClient

from annotation.models import Judgment, Lease
from annotation.services.rating import item_next_for_rater
from stickerloop.services import token_issue
from tests import factories as f

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user).key}")
    return client


@pytest.fixture
def world():
    """Campaign A rated by ``me`` and ``other``, campaign B by ``outsider`` only; each rater
    holds a lease in their campaign."""
    me, other, outsider = f.rater("me"), f.rater("other"), f.rater("outsider")
    a = f.running_campaign(raters=[me, other], n_items=4, name="campaign A")
    b = f.running_campaign(raters=[outsider], n_items=2, name="campaign B")
    b.guidelines = "Secret guidelines of B"
    b.save(update_fields=["guidelines"])
    [mine] = item_next_for_rater(campaign=a, rater=me, count=1)
    [theirs] = item_next_for_rater(campaign=a, rater=other, count=1)
    [in_b] = item_next_for_rater(campaign=b, rater=outsider, count=1)
    return {
        "me": me,
        "other": other,
        "a": a,
        "b": b,
        "mine": mine,
        "theirs": theirs,
        "in_b": in_b,
    }


def _submit(item_id: int) -> dict:
    return {
        "item": item_id,
        "client_id": str(uuid.uuid4()),
        "answers": {"aligned": True},
        "seconds_on_item": 1.0,
    }


# Another campaign -------------------------------------------------------------------------------


def test_a_rater_cannot_lease_or_list_in_a_campaign_they_are_not_in(world):
    client, b = _api(world["me"]), world["b"]
    refusal = {"detail": "You are not a rater of campaign 'campaign B'."}
    for method, path in [
        ("post", f"/api/campaigns/{b.pk}/next/"),
        ("post", f"/api/campaigns/{b.pk}/rate/"),
        ("get", f"/api/campaigns/{b.pk}/held/"),
        ("post", f"/api/campaigns/{b.pk}/undo/"),
    ]:
        response = getattr(client, method)(path, {}, format="json")
        assert (response.status_code, response.json()) == (403, refusal), path
    assert Lease.objects.filter(rater=world["me"], item__campaign=b).count() == 0


def test_a_rater_cannot_submit_or_skip_an_item_of_another_campaign(world):
    client, b, in_b = _api(world["me"]), world["b"], world["in_b"]
    refusal = (403, {"detail": "You are not a rater of campaign 'campaign B'."})
    submitted = client.post(f"/api/campaigns/{b.pk}/submit/", _submit(in_b.pk), format="json")
    assert (submitted.status_code, submitted.json()) == refusal
    skipped = client.post(
        f"/api/campaigns/{b.pk}/skip/",
        {"item": in_b.pk, "client_id": str(uuid.uuid4()), "reason": "x"},
        format="json",
    )
    assert (skipped.status_code, skipped.json()) == refusal
    assert Judgment.objects.filter(item__campaign=b).count() == 0


def test_an_item_sent_through_another_campaigns_address_is_not_found(world):
    """My own leased item, but posted to campaign B's address: the item is not B's."""
    client, b, mine = _api(world["me"]), world["b"], world["mine"]
    skipped = client.post(
        f"/api/campaigns/{b.pk}/skip/",
        {"item": mine.pk, "client_id": str(uuid.uuid4()), "reason": "x"},
        format="json",
    )
    assert skipped.status_code == 404
    submitted = client.post(f"/api/campaigns/{b.pk}/submit/", _submit(mine.pk), format="json")
    assert (submitted.status_code, submitted.json()) == (
        403,
        {"detail": "You are not a rater of campaign 'campaign B'."},
    )
    assert Judgment.objects.count() == 0


def test_a_rater_cannot_see_another_campaigns_page_guidelines_or_media(world, client):
    client.force_login(world["me"])
    page = client.get(f"/rate/{world['b'].pk}/")
    assert page.status_code == 403
    assert b"Secret guidelines of B" not in page.content
    candidate = world["in_b"].candidates.first()
    assert client.get(f"/rate/media/{candidate.pk}/file").status_code == 404


def test_a_rater_cannot_read_campaign_progress_or_quality(world):
    client, a = _api(world["me"]), world["a"]
    for path in [
        f"/api/campaigns/{a.pk}/",
        f"/api/campaigns/{a.pk}/progress/",
        f"/api/quality/campaigns/{a.pk}/raters/",
        f"/api/quality/campaigns/{a.pk}/results/",
    ]:
        assert client.get(path).status_code == 403, path


def test_the_rater_campaign_list_shows_only_their_campaigns(world):
    response = _api(world["me"]).get("/api/rate/campaigns/")
    assert response.status_code == 200
    assert [row["name"] for row in response.json()] == ["campaign A"]


# Another rater's work ---------------------------------------------------------------------------


def test_a_rater_cannot_submit_or_skip_an_item_leased_to_another_rater(world):
    client, a, theirs = _api(world["me"]), world["a"], world["theirs"]
    refusal = (403, {"detail": f"You hold no lease on item {theirs.pk}."})
    submitted = client.post(f"/api/campaigns/{a.pk}/submit/", _submit(theirs.pk), format="json")
    assert (submitted.status_code, submitted.json()) == refusal
    skipped = client.post(
        f"/api/campaigns/{a.pk}/skip/",
        {"item": theirs.pk, "client_id": str(uuid.uuid4()), "reason": "x"},
        format="json",
    )
    assert (skipped.status_code, skipped.json()) == refusal
    assert Judgment.objects.count() == 0


def test_a_rater_sees_only_their_own_leases_and_undoes_only_their_own_judgment(world):
    me, other, a = world["me"], world["other"], world["a"]
    theirs_client = _api(other)
    stored = theirs_client.post(
        f"/api/campaigns/{a.pk}/submit/", _submit(world["theirs"].pk), format="json"
    )
    assert stored.status_code == 201
    client = _api(me)
    held = client.get(f"/api/campaigns/{a.pk}/held/")
    assert [item["id"] for item in held.json()["items"]] == [world["mine"].pk]
    undo = client.post(f"/api/campaigns/{a.pk}/undo/")
    assert (undo.status_code, undo.json()) == (
        409,
        {"detail": "You have no judgment to undo in this campaign."},
    )
    assert Judgment.objects.filter(rater=other).count() == 1


def test_a_replayed_client_id_of_another_rater_does_not_return_their_judgment(world):
    a = world["a"]
    body = _submit(world["theirs"].pk)
    assert _api(world["other"]).post(f"/api/campaigns/{a.pk}/submit/", body, format="json")
    replay = _api(world["me"]).post(
        f"/api/campaigns/{a.pk}/submit/", {**body, "item": world["mine"].pk}, format="json"
    )
    # Replays are looked up per rater: mine is a new judgment of my item.
    assert (replay.status_code, replay.json()["item"]) == (201, world["mine"].pk)
    assert Judgment.objects.filter(rater=world["other"]).get().item_id == world["theirs"].pk


# Ids of other kinds -----------------------------------------------------------------------------


def test_ids_of_other_kinds_are_not_found(world, curator, engineer):
    a, mine = world["a"], world["mine"]
    candidate = mine.candidates.first()
    unused = max(a.pk, mine.pk, candidate.pk, world["me"].pk) + 1000
    cases = [
        (curator, "get", f"/api/batches/{a.pk + unused}/"),
        (curator, "get", f"/api/candidates/{unused}/"),
        (curator, "get", f"/api/campaigns/{unused}/"),
        (curator, "get", f"/api/dataset-versions/{a.pk}/"),
        (curator, "get", f"/api/dataset-exports/{a.pk}/"),
        (curator, "get", f"/api/dataset-rules/{a.pk}/"),
        (curator, "get", f"/api/quality/runs/{a.pk}/"),
        (curator, "post", f"/api/quality/campaigns/{a.pk}/gold/{unused}/unset/"),
        (curator, "post", f"/api/quality/campaigns/{a.pk}/raters/{unused}/pause/"),
        (curator, "post", f"/api/quality/campaigns/{a.pk}/raters/{unused}/resume/"),
        (curator, "post", f"/api/campaigns/{unused}/start/"),
        (engineer, "get", f"/api/training-jobs/{a.pk}/"),
        (engineer, "get", f"/api/model-versions/{unused}/"),
        (engineer, "post", f"/api/training-jobs/{a.pk}/cancel/"),
        (engineer, "get", f"/api/training-jobs/{a.pk}/losses/"),
        (world["me"], "post", f"/api/campaigns/{unused}/next/"),
        (world["me"], "post", f"/api/campaigns/{unused}/undo/"),
        (world["me"], "get", f"/api/campaigns/{unused}/held/"),
    ]
    got = [
        (path, getattr(_api(user), method)(path, {}, format="json").status_code)
        for user, method, path in cases
    ]
    assert got == [(path, 404) for _, _, path in cases]


def test_an_item_id_of_another_kind_answers_not_found_to_the_rater(world):
    """A candidate id or a campaign id sent as an item: no such item in the campaign."""
    client, a, mine = _api(world["me"]), world["a"], world["mine"]
    unused = max(a.pk, mine.pk, world["theirs"].pk) + 1000
    skipped = client.post(
        f"/api/campaigns/{a.pk}/skip/",
        {"item": unused, "client_id": str(uuid.uuid4()), "reason": "x"},
        format="json",
    )
    assert skipped.status_code == 404
    # Submits look the item up through the rater's leases: no lease, whatever the id names.
    submitted = client.post(f"/api/campaigns/{a.pk}/submit/", _submit(unused), format="json")
    assert (submitted.status_code, submitted.json()) == (
        403,
        {"detail": f"You hold no lease on item {unused}."},
    )
    assert Judgment.objects.count() == 0


def test_a_gold_item_of_another_campaign_cannot_be_unset_through_this_one(world, curator):
    response = _api(curator).post(
        f"/api/quality/campaigns/{world['a'].pk}/gold/{world['in_b'].pk}/unset/"
    )
    assert response.status_code == 404


def test_a_rater_of_another_campaign_cannot_be_paused_through_this_one(world, curator):
    outsider = world["b"].memberships.get().rater
    response = _api(curator).post(
        f"/api/quality/campaigns/{world['a'].pk}/raters/{outsider.pk}/pause/",
        {"reason": "x"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {"rater": [f"Rater {outsider.pk} is not a member of campaign 'campaign A'."]},
    )
    assert world["b"].memberships.get().status == "active"
