"""The annotation API and pages: status codes, exact messages, nothing stored on bad input."""

import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import selectors
from annotation.models import Campaign, Item, Judgment, Lease
from annotation.quality.services.membership import campaign_membership_set
from annotation.services.campaigns import campaign_close, campaign_update
from annotation.services.rating import item_next_for_rater, judgment_submit
from generation.pipelines import encode_frame_strip
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(api):
    r = f.rater("rita")
    campaign = f.running_campaign(raters=[r], n_items=3, preset="style", name="Style 1")
    return api(r), r, campaign


def _step(client, campaign, **body):
    return client.post(f"/api/campaigns/{campaign.pk}/rate/", body, format="json")


def _submission(item_id, answers, **extra):
    return {
        "item": item_id,
        "client_id": str(uuid.uuid4()),
        "seconds_on_item": 2.5,
        "answers": answers,
        **extra,
    }


def test_step_leases_and_shows_items_without_the_model(setup):
    client, r, campaign = setup
    response = _step(client, campaign, fetch=2)
    assert response.status_code == 200
    body = response.json()
    assert (body["judgment"], body["replayed"], body["campaign_status"], body["message"]) == (
        None,
        False,
        "running",
        "",
    )
    first = body["items"][0]
    [candidate] = first["candidates"]
    assert set(candidate) == {
        "position",
        "side",
        "kind",
        "url",
        "width",
        "height",
        "frame_count",
        "prompt",
        "motion_prompt",
        "fps",
        "frames",
        "strip_url",
        "source_url",
    }
    assert (candidate["frames"], candidate["strip_url"]) == ([], "")
    # Files under a signed grant for the item: no candidate id, no storage key.
    assert re.fullmatch(rf"/rate/media/i{first['id']}:[0-9A-Za-z]+:[\w-]+/0/file", candidate["url"])
    # submit the first, lease one more, in one request
    response = _step(
        client,
        campaign,
        fetch=1,
        submit=_submission(first["id"], {"style_pass": False, "defects": ["cropped"]}),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["judgment"]["item"] == first["id"]
    assert body["judgment"]["answers"] == {"style_pass": False, "defects": ["cropped"]}
    assert len(body["items"]) == 1
    assert Judgment.objects.get().answers == {"style_pass": False, "defects": ["cropped"]}


@pytest.mark.parametrize(
    ("answers", "errors"),
    [
        ({}, {"answers.style_pass": ["This question is required."]}),
        (
            {"style_pass": True, "sharpness": 3},
            {"answers.sharpness": ["Unknown question 'sharpness'."]},
        ),
        ({"style_pass": 2}, {"answers.style_pass": ["Must be true or false."]}),
        (
            {"style_pass": True, "defects": ["blurry"]},
            {
                "answers.defects": [
                    "'blurry' is not one of no_border, background, stray_text, cropped, "
                    "photorealistic, cluttered."
                ]
            },
        ),
    ],
)
def test_bad_answers_are_400_and_store_nothing(setup, answers, errors):
    client, r, campaign = setup
    item_id = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    response = _step(client, campaign, submit=_submission(item_id, answers), fetch=1)
    assert response.status_code == 400
    assert response.json() == errors
    assert Judgment.objects.count() == 0
    assert Lease.objects.count() == 1


def test_likert_out_of_range_is_400(api):
    r = f.rater()
    p = f.prompt("a castle")
    campaign = f.running_campaign(
        raters=[r], kind="set", groups=[[f.sticker(on_prompt=p), f.sticker(on_prompt=p)]]
    )
    client = api(r)
    item_id = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    response = client.post(
        f"/api/campaigns/{campaign.pk}/submit/",
        _submission(item_id, {"diversity": 0}),
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"answers.diversity": ["Must be an integer from 1 to 5, not 0."]}
    assert Judgment.objects.count() == 0


def test_submit_endpoint_is_idempotent(setup):
    client, r, campaign = setup
    item_id = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    payload = _submission(item_id, {"style_pass": True})
    first = client.post(f"/api/campaigns/{campaign.pk}/submit/", payload, format="json")
    again = client.post(f"/api/campaigns/{campaign.pk}/submit/", payload, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert Judgment.objects.count() == 1


def test_403_for_outsiders_and_items_without_lease(setup, api):
    client, r, campaign = setup
    outsider = api(f.rater("olga"))
    response = outsider.post(f"/api/campaigns/{campaign.pk}/next/", {"count": 1}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "You are not a rater of campaign 'Style 1'."}
    item = Item.objects.filter(campaign=campaign).first()
    response = _step(client, campaign, submit=_submission(item.pk, {"style_pass": True}))
    assert response.status_code == 403
    assert response.json() == {"detail": f"You hold no lease on item {item.pk}."}
    assert outsider.get(f"/api/campaigns/{campaign.pk}/held/").status_code == 403
    assert Judgment.objects.count() == 0


def test_409_for_a_closed_campaign(setup):
    client, r, campaign = setup
    item_id = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    campaign_close(campaign=campaign)
    response = _step(client, campaign, submit=_submission(item_id, {"style_pass": True}))
    assert response.status_code == 409
    assert response.json() == {"detail": "Campaign 'Style 1' is closed; nothing was stored."}
    assert Judgment.objects.count() == 0


def test_paused_rater_gets_403_with_the_reason(setup):
    client, r, campaign = setup
    campaign_membership_set(campaign=campaign, rater=r, status="paused", reason="too fast")
    response = client.post(f"/api/campaigns/{campaign.pk}/next/", {}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Your work on campaign 'Style 1' is paused: too fast"}


def test_rating_config_is_what_the_rating_screen_gets(setup, api, client):
    rater_client, r, campaign = setup
    response = rater_client.get(f"/api/campaigns/{campaign.pk}/rate/config/")
    assert response.status_code == 200
    config = response.json()
    assert config == {
        "campaign": {
            "id": campaign.pk,
            "name": "Style 1",
            "kind": "single",
            "status": "running",
            "rater_prompt": "raw",
        },
        "membership": {"status": "active", "reason": ""},
        "schema": campaign.question_schema,
        "user": "rita",
        "prefetch": 3,
        "undo_seconds": 120,
        "urls": {
            "step": f"/api/campaigns/{campaign.pk}/rate/",
            "held": f"/api/campaigns/{campaign.pk}/held/",
            "undo": f"/api/campaigns/{campaign.pk}/undo/",
            "progress": f"/api/campaigns/{campaign.pk}/rate/progress/",
            "ping": "/api/rate/ping/",
            "home": "/rate/",
        },
    }
    client.force_login(r)
    assert client.get(f"/rate/{campaign.pk}/").context["config"] == config
    outsider = api(f.rater("olga")).get(f"/api/campaigns/{campaign.pk}/rate/config/")
    assert (outsider.status_code, outsider.json()) == (
        403,
        {"detail": "You are not a rater of campaign 'Style 1'."},
    )
    assert api(r).get("/api/campaigns/999999/rate/config/").status_code == 404


def test_skip_undo_and_held(setup):
    client, r, campaign = setup
    items = _step(client, campaign, fetch=2).json()["items"]
    held = client.get(f"/api/campaigns/{campaign.pk}/held/").json()["items"]
    assert [i["id"] for i in held] == [i["id"] for i in items]
    response = client.post(
        f"/api/campaigns/{campaign.pk}/skip/",
        {"item": items[0]["id"], "client_id": str(uuid.uuid4()), "reason": "Not sure"},
        format="json",
    )
    assert response.status_code == 201
    assert (response.json()["skipped"], response.json()["skip_reason"]) == (True, "Not sure")
    response = client.post(f"/api/campaigns/{campaign.pk}/undo/")
    assert response.status_code == 200
    body = response.json()
    assert (body["item"]["id"], body["skipped"], body["answers"]) == (items[0]["id"], True, {})
    assert Judgment.objects.count() == 0
    response = client.post(f"/api/campaigns/{campaign.pk}/undo/")
    assert response.status_code == 409
    assert response.json() == {"detail": "You have no judgment to undo in this campaign."}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_api_step_query_count(django_assert_num_queries):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=3)
    token = Token.objects.create(user=r)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")
    item_id = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    # token lookup, then the rating step (submit, lease, what the next item shows): two queries
    with django_assert_num_queries(2):
        response = _step(client, campaign, fetch=1, submit=_submission(item_id, {"aligned": True}))
    assert response.status_code == 200 and len(response.json()["items"]) == 1
    with django_assert_num_queries(1):
        assert client.get("/api/rate/ping/").json() == {"ok": True}


# Curators ----------------------------------------------------------------------------------------


def test_curator_builds_and_runs_a_campaign(api, curator):
    client = api(curator)
    r = f.rater("rob")
    stickers = [f.sticker() for _ in range(2)]
    response = client.post(
        "/api/campaigns/create/",
        {
            "name": "Align 7",
            "kind": "single",
            "preset": "alignment",
            "overlap": 2,
            "raters": [r.pk],
            "guidelines": "Look **closely**.",
            "good_examples": [stickers[0].pk],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    campaign_id = response.json()["id"]
    response = client.post(
        f"/api/campaigns/{campaign_id}/items/add/",
        {"candidate_groups": [[s.pk] for s in stickers], "seed": 1},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["created"] == 2
    assert client.post(f"/api/campaigns/{campaign_id}/start/").json()["status"] == "running"
    progress = client.get(f"/api/campaigns/{campaign_id}/progress/").json()
    assert progress == {
        "items": 2,
        "items_done": 0,
        "items_started": 0,
        "percent_done": 0.0,
        "judgments": 0,
        "skips": 0,
        "gold_judgments": 0,
        "active_raters": 0,
        "live_leases": 0,
        "members": 1,
    }
    response = client.post(f"/api/campaigns/{campaign_id}/update/", {"overlap": 5}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Campaign 'Align 7' has started; overlap can no longer change."
    }


def test_bad_campaign_is_400_and_stores_nothing(api, curator):
    response = api(curator).post(
        "/api/campaigns/create/",
        {
            "name": "x",
            "kind": "pair",
            "question_schema": [
                {
                    "key": "better",
                    "type": "single_choice",
                    "label": "Better?",
                    "options": [
                        {"value": "left", "label": "Left", "shortcut": "b"},
                        {"value": "right", "label": "Right", "shortcut": "3"},
                    ],
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "question_schema": [
            "Question 1 ('better'): shortcut 'b' is reserved by the rating screen (reserved: , . ? "
            "[ ] b g p s u and space)."
        ]
    }
    assert Campaign.objects.count() == 0


def test_raters_cannot_manage_campaigns(api):
    r = f.rater()
    client = api(r)
    assert client.post("/api/campaigns/create/", {}, format="json").status_code == 403
    assert client.get("/api/campaigns/").status_code == 403


def test_pages(client, curator):
    r = f.rater("pia")
    campaign = f.running_campaign(raters=[r], n_items=1, name="Fun <b>stickers</b>")
    campaign_update(
        campaign=campaign,
        guidelines="# Rules\n<script>alert(1)</script>\n**Bold**",
        good_examples=[f.sticker(text="<script>alert('x')</script>")],
    )
    client.force_login(r)
    home = client.get("/rate/")
    assert home.status_code == 200
    assert b"Fun &lt;b&gt;stickers&lt;/b&gt;" in home.content
    page = client.get(f"/rate/{campaign.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Rules</h1>" in html and "<strong>Bold</strong>" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    outsider = f.rater()
    client.force_login(outsider)
    assert client.get(f"/rate/{campaign.pk}/").status_code == 403
    client.force_login(curator)
    assert client.get("/campaigns/").status_code == 200
    assert client.get(f"/campaigns/{campaign.pk}/").status_code == 200
    assert client.get("/campaigns/new/").status_code == 200


def test_curator_pages_create_and_start(client, curator):
    r = f.rater("quin")
    sticker = f.sticker(on_prompt=f.prompt("a hat", tags=("clothes",)))
    client.force_login(curator)
    response = client.post(
        "/campaigns/new/",
        {
            "name": "Hats",
            "kind": "single",
            "presets": ["style"],
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
            "raters": [r.pk],
        },
    )
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/"
    client.post(f"/campaigns/{campaign.pk}/items/", {"prompt_tags": ["clothes"]})
    assert [i.candidate_ids_in_order() for i in campaign.items.all()] == [[sticker.pk]]
    client.post(f"/campaigns/{campaign.pk}/start/")
    campaign.refresh_from_db()
    assert campaign.status == "running"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"fetch": 11}, {"fetch": ["Ensure this value is less than or equal to 10."]}),
        ({"fetch": "2"}, {"fetch": ["A valid integer is required."]}),
        (
            {"submit": {"item": "x", "client_id": "nope", "seconds_on_item": -1}},
            {
                "submit.item": ["A valid integer is required."],
                "submit.client_id": ["Must be a valid UUID."],
                "submit.seconds_on_item": ["A number of at least 0 is required."],
            },
        ),
        ({"submit": [1]}, {"submit": ["Must be an object."]}),
    ],
)
def test_malformed_step_requests_are_400(setup, body, errors):
    client, r, campaign = setup
    response = _step(client, campaign, **body)
    assert response.status_code == 400
    assert response.json() == errors
    assert Lease.objects.count() == 0


def test_rating_media_by_item_grant_and_position(client):
    r, outsider = f.rater(), f.rater()
    source = f.sticker()
    anim = f.animation(source=source, frames=3)
    campaign = f.running_campaign(raters=[r], kind="single", groups=[[anim]], preset="motion")
    client.force_login(r)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    [payload] = selectors.item_payloads(item_ids=[item.pk], rater_id=r.pk, rater_prompt="raw")
    [shown] = payload["candidates"]
    grant = shown["url"].removesuffix("/0/file")
    assert shown["frames"] == [f"{grant}/0/frame-{i}" for i in range(3)]
    assert shown["strip_url"] == f"{grant}/0/strip"
    assert shown["source_url"] == f"{grant}/0/source"
    frame = client.get(shown["frames"][2])
    assert frame.status_code == 200 and frame["Content-Type"] == "image/png"
    assert (
        b"".join(frame.streaming_content)
        == default_storage.open(f"{anim.frames_prefix}frame-002.png").read()
    )
    assert client.get(f"{grant}/0/frame-3").status_code == 404
    assert client.get(f"{grant}/1/file").status_code == 404
    assert client.get(f"{grant}/1/strip").status_code == 404
    # The strip: the three frames side by side, made by this first request.
    strip = client.get(shown["strip_url"])
    assert strip.status_code == 200 and strip["Content-Type"] == "image/png"
    frames = [
        Image.open(default_storage.open(f"{anim.frames_prefix}frame-{i:03d}.png"))
        for i in (0, 1, 2)
    ]
    assert b"".join(strip.streaming_content) == encode_frame_strip(frames)
    client.force_login(outsider)
    assert client.get(shown["url"]).status_code == 404
    assert client.get(shown["strip_url"]).status_code == 404


def test_answers_name_candidates_by_position_and_are_stored_by_id(api):
    r = f.rater()
    a, b = f.sticker(), f.sticker()
    schema = [
        {"key": "better", "type": "pick", "label": "Better"},
        {"key": "ok", "type": "binary", "label": "OK?", "per_candidate": True},
    ]
    campaign = f.running_campaign(raters=[r], kind="pair", question_schema=schema, groups=[[a, b]])
    client = api(r)
    [item] = _step(client, campaign, fetch=1).json()["items"]
    shown = list(
        Item.objects.get(pk=item["id"])
        .item_candidates.order_by("position")
        .values_list("candidate_id", flat=True)
    )
    # answers name positions; the message names positions only, never candidate ids
    wrong = _step(
        client,
        campaign,
        submit=_submission(item["id"], {"better": 2, "ok": {"0": True, "1": True}}),
    )
    assert wrong.status_code == 400
    assert wrong.json() == {"answers.better": ["2 is not one of the shown candidates (0, 1)."]}
    answers = {"better": 1, "ok": {"0": True, "1": False}}
    sent = _submission(item["id"], answers)
    response = _step(client, campaign, fetch=0, submit=sent)
    assert response.json()["judgment"]["answers"] == answers
    stored = Judgment.objects.get(item_id=item["id"]).answers
    assert stored == {"better": shown[1], "ok": {str(shown[0]): True, str(shown[1]): False}}
    # a retried submit and an undo give the rater's form back
    replay = _step(client, campaign, fetch=0, submit=sent).json()
    assert (replay["replayed"], replay["judgment"]["answers"]) == (True, answers)
    undone = client.post(f"/api/campaigns/{campaign.pk}/undo/").json()
    assert undone["answers"] == answers


def test_rater_progress_counts_this_rater_in_this_campaign(api):
    # given: five items wanting two judgments each; rita leases three, judges the first (two
    # days ago) and skips the second; olga is served the first, closest to completion, and
    # judges it too
    rita, olga = f.rater("rita"), f.rater("olga")
    campaign = f.running_campaign(
        raters=[rita, olga], n_items=5, overlap=2, preset="style", name="Style 2"
    )
    client = api(rita)
    first, second, _ = _step(client, campaign, fetch=3).json()["items"]
    judged = _step(client, campaign, submit=_submission(first["id"], {"style_pass": True}))
    _step(client, campaign, submit=_submission(second["id"], {}, skipped=True, skip_reason="x"))
    Judgment.objects.filter(pk=judged.json()["judgment"]["id"]).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    other = api(olga)
    [theirs] = _step(other, campaign, fetch=1).json()["items"]
    assert theirs["id"] == first["id"]
    _step(other, campaign, submit=_submission(theirs["id"], {"style_pass": False}))
    # when
    response = client.get(f"/api/campaigns/{campaign.pk}/rate/progress/")
    # then: left for rita are the item she holds and the two nobody has seen; the one she
    # skipped is still open but not for her, and the first is done
    assert response.status_code == 200
    assert response.json() == {
        "judged_today": 0,
        "judged_total": 1,
        "skipped_total": 1,
        "left": 3,
        "left_capped": False,
        "campaign": {"items": 5, "items_done": 1, "percent_done": 20.0},
    }
    # olga can still be given every item but the first, the one rita holds included
    assert other.get(f"/api/campaigns/{campaign.pk}/rate/progress/").json() == {
        "judged_today": 1,
        "judged_total": 1,
        "skipped_total": 0,
        "left": 4,
        "left_capped": False,
        "campaign": {"items": 5, "items_done": 1, "percent_done": 20.0},
    }


def test_rater_progress_counts_items_left_up_to_a_cap(api, monkeypatch):
    r = f.rater("rita")
    campaign = f.running_campaign(raters=[r], n_items=5)
    monkeypatch.setattr(selectors, "LEFT_FOR_RATER_CAP", 3)
    body = api(r).get(f"/api/campaigns/{campaign.pk}/rate/progress/").json()
    assert (body["left"], body["left_capped"]) == (3, True)
    monkeypatch.setattr(selectors, "LEFT_FOR_RATER_CAP", 5)
    body = api(r).get(f"/api/campaigns/{campaign.pk}/rate/progress/").json()
    assert (body["left"], body["left_capped"]) == (5, False)


def test_the_rater_home_shows_the_items_left_for_me_as_the_rating_screen_counts_them(
    api, client, monkeypatch
):
    # given: rita leases two of Style A's five items and judges one of them; olga judges
    # another; Style B's three items are untouched
    rita, olga = f.rater("rita"), f.rater("olga")
    a = f.running_campaign(raters=[rita, olga], n_items=5, overlap=2, preset="style", name="A")
    b = f.running_campaign(raters=[rita], n_items=3, preset="style", name="B")
    mine = api(rita)
    first, _ = _step(mine, a, fetch=2).json()["items"]
    _step(mine, a, submit=_submission(first["id"], {"style_pass": True}))
    [theirs] = _step(api(olga), a, fetch=1).json()["items"]
    _step(api(olga), a, submit=_submission(theirs["id"], {"style_pass": True}))
    client.force_login(rita)

    def left_on_the_home_page() -> dict[int, str]:
        html = client.get("/rate/").content.decode()
        rows = re.findall(r'data-campaign="(\d+)">.*?data-field="left">([^<]*)<', html, re.S)
        return {int(pk): left for pk, left in rows}

    # then A has the one she holds and the three she never saw (olga's included: it wants two)
    assert left_on_the_home_page() == {a.pk: "4", b.pk: "3"}
    assert [
        (r["name"], r["left"], r["left_capped"]) for r in mine.get("/api/rate/campaigns/").json()
    ] == [
        ("B", 3, False),
        ("A", 4, False),
    ]
    assert mine.get(f"/api/campaigns/{a.pk}/rate/progress/").json()["left"] == 4
    # and past the cap both say there are more
    monkeypatch.setattr(selectors, "LEFT_FOR_RATER_CAP", 3)
    assert left_on_the_home_page() == {a.pk: "3+", b.pk: "3"}
    assert mine.get(f"/api/campaigns/{a.pk}/rate/progress/").json()["left_capped"] is True


def test_rater_progress_is_for_members_only(api):
    r = f.rater("rita")
    campaign = f.running_campaign(raters=[r], n_items=1, name="Style 3")
    outsider = api(f.rater("olga")).get(f"/api/campaigns/{campaign.pk}/rate/progress/")
    assert (outsider.status_code, outsider.json()) == (
        403,
        {"detail": "You are not a rater of campaign 'Style 3'."},
    )
    assert api(r).get("/api/campaigns/999999/rate/progress/").status_code == 404


def test_the_rating_page_opens_with_the_raters_counters(client):
    r = f.rater("rita")
    campaign = f.running_campaign(raters=[r], n_items=4, preset="style")
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    judgment_submit(
        item=item, rater=r, answers={"style_pass": True}, client_id=uuid.uuid4(), seconds_on_item=2
    )
    client.force_login(r)
    assert client.get(f"/rate/{campaign.pk}/").context["progress"] == {
        "judged_today": 1,
        "judged_total": 1,
        "skipped_total": 0,
        "left": 3,
        "left_capped": False,
        "campaign": {"items": 4, "items_done": 1, "percent_done": 25.0},
    }
