"""Which prompt raters see: the campaign's ``rater_prompt``, raw by default (alignment is judged
against what was asked for, as in the Style Tailoring paper) or enhanced. Checked over HTTP on
every endpoint that shows items, with the rating step both as the SQL function and from Python."""

import uuid

import pytest

from annotation.models import Campaign
from annotation.services.campaigns import campaign_update
from generation.models import Candidate
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = pytest.mark.django_db

RAW = ["a red cat", "a blue dog"]
ENHANCED = ["a sticker of a red cat, flat colours", ""]


def _stickers() -> list[Candidate]:
    """Two stickers: one with an enhanced prompt, one without (it shows its raw prompt)."""
    made = []
    for raw, enhanced in zip(RAW, ENHANCED, strict=True):
        sticker = f.sticker(text=raw)
        Candidate.objects.filter(pk=sticker.pk).update(enhanced_prompt=enhanced)
        made.append(sticker)
    return made


def _campaign(rater, **campaign_settings) -> Campaign:
    return f.running_campaign(
        raters=[rater], preset="alignment", groups=[[c] for c in _stickers()], **campaign_settings
    )


def _prompts(items) -> dict[str, str]:
    return {item["id"]: item["candidates"][0]["prompt"] for item in items}


def _by_raw(campaign, items) -> list[str]:
    """The prompts shown, in the order of RAW."""
    shown = _prompts(items)
    order = {item.pk: RAW.index(item.candidates.get().raw_prompt) for item in campaign.items.all()}
    return [p for _, p in sorted((order[i], p) for i, p in shown.items())]


@pytest.mark.parametrize(
    ("campaign_settings", "expected"),
    [
        ({}, RAW),
        ({"rater_prompt": "raw"}, RAW),
        ({"rater_prompt": "enhanced"}, ["a sticker of a red cat, flat colours", "a blue dog"]),
    ],
)
def test_the_rating_api_shows_the_prompt_the_campaign_chooses(
    api, step_mode, campaign_settings, expected
):
    rater = f.rater()
    campaign = _campaign(rater, **campaign_settings)
    client = api(rater)
    url = f"/api/campaigns/{campaign.pk}"

    step = client.post(f"{url}/rate/", {"fetch": 2}, format="json")
    held = client.get(f"{url}/held/")
    config = client.get(f"{url}/rate/config/")

    assert step.status_code == 200
    assert _by_raw(campaign, step.json()["items"]) == expected
    assert _by_raw(campaign, held.json()["items"]) == expected
    assert config.json()["campaign"]["rater_prompt"] == campaign_settings.get("rater_prompt", "raw")
    # Submitting one and undoing it shows the item again, with the same prompt.
    first = step.json()["items"][0]
    submitted = client.post(
        f"{url}/rate/",
        {
            "submit": {
                "item": first["id"],
                "client_id": str(uuid.uuid4()),
                "seconds_on_item": 1.0,
                "answers": {"aligned": True},
            },
            "fetch": 0,
        },
        format="json",
    )
    assert submitted.status_code == 200, submitted.json()
    undone = client.post(f"{url}/undo/")
    assert undone.json()["item"]["candidates"][0]["prompt"] == _prompts([first])[first["id"]]


def test_next_shows_the_enhanced_prompt(api):
    rater = f.rater()
    campaign = _campaign(rater, rater_prompt="enhanced")

    response = api(rater).post(f"/api/campaigns/{campaign.pk}/next/", {"count": 2}, format="json")

    assert _by_raw(campaign, response.json()["items"]) == [
        "a sticker of a red cat, flat colours",
        "a blue dog",
    ]


def test_the_campaign_api_takes_the_setting_and_refuses_an_unknown_one(api, curator):
    client = api(curator)

    made = client.post(
        "/api/campaigns/create/",
        {"name": "Align", "kind": "single", "preset": "alignment", "rater_prompt": "enhanced"},
        format="json",
    )
    default = client.post(
        "/api/campaigns/create/",
        {"name": "Plain", "kind": "single", "preset": "alignment"},
        format="json",
    )
    bad = client.post(
        "/api/campaigns/create/",
        {"name": "Bad", "kind": "single", "preset": "alignment", "rater_prompt": "both"},
        format="json",
    )

    assert (made.status_code, made.json()["rater_prompt"]) == (201, "enhanced")
    assert (default.status_code, default.json()["rater_prompt"]) == (201, "raw")
    assert (bad.status_code, bad.json()) == (
        400,
        {"rater_prompt": ['"both" is not a valid choice.']},
    )
    assert not Campaign.objects.filter(name="Bad").exists()
    changed = client.post(
        f"/api/campaigns/{made.json()['id']}/update/", {"rater_prompt": "raw"}, format="json"
    )
    assert (changed.status_code, changed.json()["rater_prompt"]) == (200, "raw")


def test_the_service_refuses_an_unknown_setting_by_name(curator):
    from django.core.exceptions import ValidationError

    from annotation.services.campaigns import campaign_create

    with pytest.raises(ValidationError) as error:
        campaign_create(name="Bad", kind="single", preset="alignment", rater_prompt="both")

    assert error.value.message_dict == {
        "rater_prompt": ["Unknown choice 'both'; use one of raw, enhanced."]
    }
    assert Campaign.objects.count() == 0


def test_a_started_campaign_keeps_its_setting(api, curator):
    rater = f.rater()
    campaign = _campaign(rater)

    response = api(curator).post(
        f"/api/campaigns/{campaign.pk}/update/", {"rater_prompt": "enhanced"}, format="json"
    )

    assert response.status_code == 409
    with pytest.raises(ServiceConflict):
        campaign_update(campaign=campaign, rater_prompt="enhanced")
    campaign.refresh_from_db()
    assert campaign.rater_prompt == "raw"


def test_campaign_pages_set_and_show_the_setting(client, curator):
    client.force_login(curator)

    response = client.post(
        "/campaigns/new/",
        {
            "name": "Align",
            "kind": "single",
            "presets": ["alignment"],
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
            "rater_prompt": "enhanced",
        },
    )
    campaign = Campaign.objects.get()
    bad = client.post(
        f"/campaigns/{campaign.pk}/edit/",
        {
            "name": "Align",
            "presets": ["alignment"],
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
            "rater_prompt": "both",
        },
    )

    assert response.status_code == 302
    assert campaign.rater_prompt == "enhanced"
    assert (
        "<dt>Raters see</dt><dd>the enhanced prompt"
        in client.get(f"/campaigns/{campaign.pk}/").content.decode()
    )
    assert bad.context["form"].errors == {
        "rater_prompt": ["Select a valid choice. both is not one of the available choices."]
    }
    form = client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert '<option value="enhanced" selected>' in form


def test_the_rating_screens_examples_show_the_chosen_prompt(client):
    rater = f.rater()
    campaign = _campaign(rater, rater_prompt="enhanced")
    good = Candidate.objects.get(raw_prompt="a red cat")
    campaign.good_examples.set([good])
    client.force_login(rater)

    response = client.get(f"/rate/{campaign.pk}/")

    assert [e["prompt"] for e in response.context["good_examples"]] == [
        "a sticker of a red cat, flat colours"
    ]
