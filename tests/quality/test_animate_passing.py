"""A campaign's passing stickers go to the animation batch page, ticked."""

import json

import pytest
from django.contrib.messages import get_messages

from tests import factories as f

pytestmark = pytest.mark.django_db


def _url(campaign, passing) -> str:
    return f"/quality/campaigns/{campaign.pk}/animate/?passing={json.dumps(passing)}"


@pytest.fixture
def judged():
    """Items: both raters say ok, both say not ok, a tie, and a gold item both call ok."""
    campaign = f.campaign(questions=f.BINARY_SCHEMA, overlap=2)
    passed, failed, tied, gold = f.items(campaign, 4, gold={3: {"ok": True}})
    a, b = f.rater("ra"), f.rater("rb")
    for item, answers in ((passed, (True, True)), (failed, (False, False)), (tied, (True, False))):
        for rater, answer in zip((a, b), answers, strict=True):
            f.judge(item, rater, {"ok": answer})
    for rater in (a, b):
        f.judge(gold, rater, {"ok": True})
    return campaign, passed.candidates.get(), failed.candidates.get()


def test_passing_stickers_are_ticked_on_the_animation_page(site, curator, judged):
    campaign, passed, failed = judged
    client = site(curator)
    assert (
        'value="[&quot;ok&quot;, true]"'
        in client.get(f"/quality/campaigns/{campaign.pk}/").content.decode()
    )
    for answer, sticker in ((True, passed), (False, failed)):
        response = client.get(_url(campaign, ["ok", answer]))
        assert (response.status_code, response.url) == (302, "/batches/new/animation/")
        page = client.get(response.url).content.decode()
        assert f'name="stickers" value="{sticker.pk}"' in page
    # The session hands them over once.
    assert 'name="stickers" value=""' in client.get("/batches/new/animation/").content.decode()


@pytest.mark.parametrize(
    ("passing", "message"),
    [
        ("not json", "Choose a question and an answer."),
        ([1, True], "Choose a question and an answer."),
        (["ok"], "Choose a question and an answer."),
        (["size", True], "Campaign {pk} has no question 'size' (ok)."),
        (["ok", "maybe"], "No sticker of this campaign has that consensus on ok."),
    ],
)
def test_a_bad_choice_goes_back_with_a_message(site, curator, judged, passing, message):
    campaign, _, _ = judged
    url = (
        f"/quality/campaigns/{campaign.pk}/animate/?passing={passing}"
        if isinstance(passing, str)
        else _url(campaign, passing)
    )
    response = site(curator).get(url)
    assert (response.status_code, response.url) == (302, f"/quality/campaigns/{campaign.pk}/")
    messages = [m.message for m in get_messages(response.wsgi_request)]
    assert messages == [message.format(pk=campaign.pk)]
