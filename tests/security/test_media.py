"""Media by permission, checked from outside over HTTP with real logins.

Raters reach a candidate's files only through the signed, expiring URLs of the items they hold
a lease on or have judged; staff roles reach stored files through ``/media/<key>``, but never
exports, which leave only through the export API. Nothing a rater gets names a candidate id, a
storage key or a model, and the order within an item says nothing about the model either.
"""

import hashlib
import json
import math
import time
import uuid
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import ItemCandidate, Judgment
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_from_selection
from generation.models import Candidate
from generation.pipelines import encode_frame_strip
from generation.services.strips import frame_strip_key
from stickerloop import media
from tests import factories as f
from training_bridge.exports.create import dataset_export_create
from training_bridge.exports.run import dataset_export_run
from training_bridge.rules import dataset_rule_create
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = pytest.mark.django_db

PICK = [{"key": "better", "type": "pick", "label": "Which is better?"}]
MOVES = [{"key": "moves", "type": "binary", "label": "Does it move well?"}]


def login(user, password: str) -> Client:
    """A browser session through the login page, as a person signs in."""
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


def token_client(user, password: str) -> APIClient:
    """An API client holding a token from the token endpoint."""
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def step(client: Client, campaign, **body) -> dict:
    response = client.post(
        f"/api/campaigns/{campaign.pk}/rate/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def submission(item_id: int, answers: dict) -> dict:
    return {
        "item": item_id,
        "client_id": str(uuid.uuid4()),
        "seconds_on_item": 2.0,
        "answers": answers,
    }


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def shown_url(campaign, rater, item) -> str:
    """A correctly signed grant for ``rater`` on ``item``: what a leaked or guessed URL could
    at best be. Only the lease and judgment check stands between it and the file."""
    token = media.grant_token(user_id=rater.pk, scope=f"i{item.pk}")
    return media.granted_url(token, 0, "file")


@pytest.fixture
def two_campaigns():
    rita, omar = f.user("rita", ["rater"]), f.user("omar", ["rater"])
    mine = f.running_campaign(raters=[rita], n_items=3, preset="style")
    theirs = f.running_campaign(raters=[omar], n_items=2, preset="style")
    return rita, omar, mine, theirs


def test_raw_media_urls_are_closed_to_raters(two_campaigns):
    rita, _, mine, theirs = two_campaigns
    client = login(rita, f.PASSWORD)
    for campaign in (mine, theirs):
        for key in campaign.items.values_list("candidates__file", flat=True):
            assert client.get(media.media_url(key)).status_code == 404


def test_rater_gets_media_only_of_items_leased_or_judged(two_campaigns):
    rita, omar, mine, theirs = two_campaigns
    client = login(rita, f.PASSWORD)
    # given: one leased item
    [item] = step(client, mine, fetch=1)["items"]
    [shown] = item["candidates"]
    stored = Candidate.objects.get(item_links__item_id=item["id"])
    # then: its file comes back, byte for byte
    response = client.get(shown["url"])
    assert response.status_code == 200
    assert hashlib.sha256(body(response)).hexdigest() == stored.sha256
    # and: an item of the same campaign, not leased nor judged, is refused even when signed
    other = mine.items.exclude(pk=item["id"]).order_by("pk").first()
    assert client.get(shown_url(mine, rita, other)).status_code == 404
    # and: an item of a campaign the rater is not in
    foreign = theirs.items.order_by("pk").first()
    assert client.get(shown_url(theirs, rita, foreign)).status_code == 404
    # and: a URL handed to another rater is no use to this one
    omar_client = login(omar, f.PASSWORD)
    assert omar_client.get(shown["url"]).status_code == 404
    # when: the item is judged
    done = step(client, mine, fetch=0, submit=submission(item["id"], {"style_pass": True}))
    assert done["judgment"]["item"] == item["id"]
    # then: the rater still sees what they judged
    assert client.get(shown["url"]).status_code == 200


def test_a_script_with_an_api_token_fetches_the_same_media_urls(two_campaigns):
    rita, omar, mine, _ = two_campaigns
    client = token_client(rita, f.PASSWORD)
    [item] = client.post(f"/api/campaigns/{mine.pk}/rate/", {"fetch": 1}, format="json").json()[
        "items"
    ]
    url = item["candidates"][0]["url"]
    stored = Candidate.objects.get(item_links__item_id=item["id"])

    response = client.get(url)
    assert response.status_code == 200
    assert hashlib.sha256(body(response)).hexdigest() == stored.sha256
    # Another rater's token opens nothing; a wrong token is 401; no token asks for a login.
    assert token_client(omar, f.PASSWORD).get(url).status_code == 404
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = forged.get(url)
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token."})
    assert response.headers["WWW-Authenticate"] == "Token"
    response = APIClient().get(url)
    assert (response.status_code, response.headers["Location"]) == (
        302,
        f"/login/?next={url.replace(':', '%3A')}",
    )


def test_a_staff_script_with_an_api_token_fetches_a_candidates_file_url(two_campaigns):
    rita, _, mine, _ = two_campaigns
    curator = f.user("cora", ["curator"])
    stored = Candidate.objects.filter(item_links__item__campaign=mine).order_by("pk").first()
    url = media.media_url(stored.file)

    response = token_client(curator, f.PASSWORD).get(url)

    assert response.status_code == 200
    assert hashlib.sha256(body(response)).hexdigest() == stored.sha256
    # A rater's token opens no raw file; a wrong token is 401.
    assert token_client(rita, f.PASSWORD).get(url).status_code == 404
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert forged.get(url).status_code == 401


def test_expired_media_url_is_refused(two_campaigns):
    rita, _, mine, _ = two_campaigns
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]
    url = item["candidates"][0]["url"]
    assert client.get(url).status_code == 200
    later = time.time() + media.grant_seconds() + 1
    with mock.patch.object(signing.time, "time", return_value=later):
        assert client.get(url).status_code == 404
    # The lease is still live: the expiry alone refused the URL.
    assert client.get(url).status_code == 200


def test_forged_media_url_is_refused(two_campaigns):
    rita, _, mine, _ = two_campaigns
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]
    url = item["candidates"][0]["url"]
    token = url.split("/")[3]
    forged = url.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert client.get(forged).status_code == 404
    unsigned = url.replace(token, f"i{item['id']}")
    assert client.get(unsigned).status_code == 404


def test_guideline_examples_by_grant_for_members_only(two_campaigns):
    rita, omar, mine, _ = two_campaigns
    example = f.sticker()
    mine.good_examples.set([example])
    page = login(rita, f.PASSWORD).get(f"/rate/{mine.pk}/")
    assert page.status_code == 200
    [url] = [ex["url"] for ex in page.context["good_examples"]]
    assert example.file not in page.content.decode()
    # Named by the campaign's examples and a position, not by the candidate.
    token, position, part = url.split("/")[3:]
    assert (token.split(":")[0], position, part) == (f"g{mine.pk}", "0", "file")
    assert login(rita, f.PASSWORD).get(url).status_code == 200
    # Omar is no member: even a grant signed for him opens nothing.
    token = media.grant_token(user_id=omar.pk, scope=f"g{mine.pk}")
    assert login(omar, f.PASSWORD).get(media.granted_url(token, 0, "file")).status_code == 404


@pytest.fixture
def animation_campaigns():
    """Rita rates two animations of her campaign; Omar rates an animation of his."""
    rita, omar = f.user("rita", ["rater"]), f.user("omar", ["rater"])
    source = f.sticker()
    mine = f.running_campaign(
        raters=[rita],
        question_schema=MOVES,
        groups=[[f.animation(source=source, frames=3)], [f.animation(source=source, frames=3)]],
    )
    theirs = f.running_campaign(
        raters=[omar], question_schema=MOVES, groups=[[f.animation(source=source, frames=3)]]
    )
    return rita, omar, mine, theirs


def strip_of(item) -> str:
    return frame_strip_key(Candidate.objects.get(item_links__item=item).frames_prefix)


def test_an_animations_strip_has_the_rules_of_its_other_files(animation_campaigns):
    rita, omar, mine, theirs = animation_campaigns
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]
    [shown] = item["candidates"]
    token, position, part = shown["strip_url"].split("/")[3:]
    assert (token.split(":")[0], position, part) == (f"i{item['id']}", "0", "strip")
    other = mine.items.exclude(pk=item["id"]).get()
    foreign = theirs.items.get()

    # Refused: an item of her campaign she holds no lease on, even signed for her; an item of a
    # campaign she is not in; her URL in Omar's hands. A refusal makes no strip either.
    def signed(item_id: int) -> str:
        return media.granted_url(
            media.grant_token(user_id=rita.pk, scope=f"i{item_id}"), 0, "strip"
        )

    assert client.get(signed(other.pk)).status_code == 404
    assert client.get(signed(foreign.pk)).status_code == 404
    assert login(omar, f.PASSWORD).get(shown["strip_url"]).status_code == 404
    made = [default_storage.exists(strip_of(i)) for i in (item["id"], other.pk, foreign.pk)]
    assert made == [False, False, False]
    # Allowed: the leased item's strip, made now, and still after she judged it.
    response = client.get(shown["strip_url"])
    assert (response.status_code, response["Content-Type"]) == (200, "image/png")
    assert body(response) == default_storage.open(strip_of(item["id"])).read()
    step(client, mine, fetch=0, submit=submission(item["id"], {"moves": True}))
    assert client.get(shown["strip_url"]).status_code == 200


def test_in_a_real_bucket_a_strip_is_made_there_and_presigned_like_any_file(s3_bucket, moto_server):
    import requests

    rita = f.user("rita", ["rater"])
    source = f.sticker()
    mine = f.running_campaign(
        raters=[rita], preset="motion", groups=[[f.animation(source=source, frames=4)]]
    )
    stored = Candidate.objects.get(kind="animation")
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]

    response = client.get(item["candidates"][0]["strip_url"])

    # then: the strip was stored in the bucket, once, and the URL redirects to it presigned
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    key = frame_strip_key(stored.frames_prefix)
    assert location.path == f"/{s3_bucket}/{key}"
    listed = moto_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=stored.frames_prefix)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        *(f"{stored.frames_prefix}frame-{i:03d}.png" for i in range(4)),
        key,
    ]
    fetched = requests.get(response["Location"], timeout=10).content
    frames = [
        Image.open(default_storage.open(f"{stored.frames_prefix}frame-{i:03d}.png"))
        for i in range(4)
    ]
    assert fetched == encode_frame_strip(frames)
    # and: asked again, the same key
    again = client.get(item["candidates"][0]["strip_url"])
    assert urlsplit(again["Location"]).path == location.path


def test_staff_see_candidate_media_through_their_pages(two_campaigns):
    _, _, mine, _ = two_campaigns
    curator = f.user("cora", ["curator"])
    key = mine.items.values_list("candidates__file", flat=True).first()
    client = login(curator, f.PASSWORD)
    assert client.get(media.media_url(key)).status_code == 200
    # A rater's grant works for the rater it was made for, not for staff.
    item = mine.items.order_by("pk").first()
    assert client.get(shown_url(mine, curator, item)).status_code == 404


@pytest.fixture
def finished_export():
    """A published alignment version of two stickers, exported as an image folder."""
    make = f.Factory()
    curator = f.user("cora", ["curator"])
    campaign = make.campaign(name="align")
    judge = make.rater("judge", campaign)
    for prompt in ("a red cat", "a blue dog"):
        item = make.item(campaign, [make.sticker(prompt)])
        make.judge(item, judge, {"aligned": True, "quality": 4})
    rule = dataset_rule_create(
        values={
            "name": "align",
            "purpose": "alignment",
            "campaigns": [campaign],
            "conditions": [{"question": "aligned", "labels": [True]}],
            "validation_fraction": 0.0,
        },
        created_by=curator,
    )
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    version = dataset_version_publish(version=version, published_by=curator)
    export = dataset_export_create(
        version=version, export_format="imagefolder", shard_size=None, requested_by=curator
    )
    dataset_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    return curator, export


def test_exports_only_through_the_export_api(finished_export):
    curator, export = finished_export
    key = f"{export.storage_prefix}imagefolder.tar"
    rater = f.user("rita", ["rater"])
    engineer = f.user("enzo", ["ml_engineer"])
    download = f"/api/dataset-exports/{export.pk}/download/"
    # A rater: neither the raw file nor the API.
    rater_client = login(rater, f.PASSWORD)
    assert rater_client.get(media.media_url(key)).status_code == 404
    assert token_client(rater, f.PASSWORD).get(download).status_code == 403
    # Staff: not as raw media either.
    assert login(curator, f.PASSWORD).get(media.media_url(key)).status_code == 404
    assert login(engineer, f.PASSWORD).get(media.media_url(key)).status_code == 404
    # The export API: permission-checked and audited.
    response = token_client(curator, f.PASSWORD).get(download)
    assert response.status_code == 200
    assert hashlib.sha256(body(response)).hexdigest() == export.sha256


def test_nothing_a_rater_gets_says_which_model_made_what():
    """200 pair items of two model versions, made as chunks make them (all of model A, then
    all of model B, so candidate ids follow the model). The rater leases and judges each over
    the API; neither the order shown nor the payload may follow the model."""
    n = 200
    a, b = f.model_version("model-a"), f.model_version("model-b")
    made = Candidate.objects.bulk_create(
        Candidate(
            kind="sticker",
            model_version=version,
            seed=seed,
            raw_prompt=f"prompt {seed}",
            file=f"candidates/1/{uuid.uuid4().hex}.png",
            width=64,
            height=64,
            sha256="0" * 64,
        )
        for version in (a, b)
        for seed in range(n)
    )
    rater = f.user("rita", ["rater"])
    campaign = campaign_create(name="A or B", kind="pair", question_schema=PICK, raters=[rater])
    campaign_items_from_selection(campaign=campaign, model_versions=[a.pk, b.pk], seed=17)
    campaign_start(campaign=campaign)
    client = login(rater, f.PASSWORD)
    secrets = [c.file for c in made] + [a.name, b.name, a.uri, b.uri]
    first_is_a, pick_is_a, seen = 0, 0, 0
    out = step(client, campaign, fetch=1)
    while out["items"]:
        [item] = out["items"]
        seen += 1
        text = json.dumps(item)
        assert [c["position"] for c in item["candidates"]] == [0, 1]
        assert {"id", "candidate", "model_version"}.isdisjoint(item["candidates"][0])
        assert not [secret for secret in secrets if secret in text]
        for c in item["candidates"]:
            # The URL: the item's grant, a position and a part; no candidate id.
            token, position, part = c["url"].split("/")[3:]
            assert (token.split(":")[0], position, part) == (
                f"i{item['id']}",
                str(c["position"]),
                "file",
            )
        shown = list(
            ItemCandidate.objects.filter(item_id=item["id"])
            .order_by("position")
            .values_list("candidate_id", "candidate__model_version_id")
        )
        first_is_a += shown[0][1] == a.pk
        # Pick the second shown: the stored answer names that candidate.
        out = step(client, campaign, fetch=1, submit=submission(item["id"], {"better": 1}))
        assert out["judgment"]["answers"] == {"better": 1}
        stored = Judgment.objects.get(pk=out["judgment"]["id"]).answers
        assert stored == {"better": shown[1][0]}
        pick_is_a += shown[1][1] == a.pk
    assert seen == n
    # A fair coin: 99.9 % of runs land within 3.29 standard deviations of n / 2.
    low, high = n / 2 - 3.29 * math.sqrt(n) / 2, n / 2 + 3.29 * math.sqrt(n) / 2
    assert low <= first_is_a <= high, first_is_a
    assert pick_is_a == n - first_is_a


class PresigningBucket:
    """What ``media_response`` asks of an S3 storage (django-storages): the object exists, and
    its URL is presigned for ``querystring_expire`` seconds."""

    bucket_name = "stickers"

    def exists(self, key: str) -> bool:
        return True

    def path(self, key: str) -> str:
        raise NotImplementedError

    def url(self, key: str) -> str:
        return f"https://bucket.example/{key}?X-Amz-Expires=600&X-Amz-Signature=abc"


def test_bucket_media_redirects_to_a_presigned_url_after_the_same_checks(two_campaigns):
    rita, _, mine, _ = two_campaigns
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]
    key = Candidate.objects.get(item_links__item_id=item["id"]).file
    other = mine.items.exclude(pk=item["id"]).order_by("pk").first()
    with mock.patch.object(media, "default_storage", PresigningBucket()):
        response = client.get(item["candidates"][0]["url"])
        assert response.status_code == 302
        assert response["Location"] == PresigningBucket().url(key)
        # A cached redirect must not outlive the presigned URL.
        assert response["Cache-Control"] == f"private, max-age={media.grant_seconds() // 2}"
        assert client.get(shown_url(mine, rita, other)).status_code == 404


def test_in_a_real_bucket_a_raters_media_url_redirects_to_the_file_presigned_briefly(
    s3_bucket, moto_server, settings
):
    import requests

    rita = f.user("rita", ["rater"])
    mine = f.running_campaign(raters=[rita], n_items=2, preset="style")
    client = login(rita, f.PASSWORD)
    [item] = step(client, mine, fetch=1)["items"]
    stored = Candidate.objects.get(item_links__item_id=item["id"])

    response = client.get(item["candidates"][0]["url"])

    # then: a redirect straight to the bucket object, signed for the grant's life; the bytes
    # come from the bucket, not through Django
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}" == moto_server.url
    assert location.path == f"/{s3_bucket}/{stored.file}"
    expires = parse_qs(location.query)["X-Amz-Expires"]
    assert expires == [str(settings.STICKERLOOP_MEDIA_URL_SECONDS)]
    fetched = requests.get(response["Location"], timeout=10)
    assert hashlib.sha256(fetched.content).hexdigest() == stored.sha256
    # and: a signed URL of an item the rater holds no lease on is still refused
    other = mine.items.exclude(pk=item["id"]).get()
    assert client.get(shown_url(mine, rita, other)).status_code == 404
