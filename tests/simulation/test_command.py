"""The command's bad input, and the accounts it makes: a campaign that does not exist or cannot
be joined is refused with a message naming it, and nothing is left behind."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from annotation.models import CampaignMembership, MembershipStatus
from annotation.quality.services.policy import quality_policy_set
from annotation.services.campaigns import campaign_close, campaign_create
from generation.world.captions import parse
from simulation.services import simulated_raters_enrol, world_stickers_import
from tests import factories as f

pytestmark = pytest.mark.django_db


def nothing_made() -> tuple:
    return (
        list(get_user_model().objects.filter(username__startswith="sim-").values_list("username")),
        Token.objects.count(),
        CampaignMembership.objects.count(),
    )


def simulate(*args: str) -> None:
    call_command("simulate_raters", *args, "--base-url", "http://127.0.0.1:9")


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        simulate(*args)
    return str(caught.value)


def test_a_campaign_that_does_not_exist():
    assert refused("--campaign", "999999") == "Campaign 999999 does not exist."
    assert nothing_made() == ([], 0, 0)


def test_a_closed_or_draft_campaign():
    closed = campaign_close(campaign=f.running_campaign(raters=[], name="Done"))
    draft = campaign_create(name="Not yet", kind="single", preset="alignment")

    assert refused("--campaign", str(closed.pk)) == (
        f"Campaign {closed.pk} ('Done') is closed; simulated raters join running campaigns only."
    )
    assert refused("--campaign", str(draft.pk)) == (
        f"Campaign {draft.pk} ('Not yet') is draft; simulated raters join running campaigns only."
    )
    assert nothing_made() == ([], 0, 0)


def test_a_campaign_behind_a_qualification():
    qualifier = f.campaign(questions=f.BINARY_SCHEMA, name="Qualifier")
    f.items(qualifier, 3, gold={i: {"ok": True} for i in range(3)})
    campaign = f.running_campaign(raters=[], name="Gated")
    quality_policy_set(
        campaign=campaign, qualification_campaign=qualifier, qualification_min_gold=3
    )

    assert refused("--campaign", str(campaign.pk)) == (
        f"Campaign {campaign.pk} ('Gated') requires the qualification campaign 'Qualifier', "
        "which new raters have not passed."
    )
    assert nothing_made() == ([], 0, 0)


def test_options_out_of_range():
    campaign = f.running_campaign(raters=[])

    assert refused("--campaign", str(campaign.pk), "--raters", "4", "--profiles", "reliable=3") == (
        "--profiles: The profiles add up to 3 raters, not the 4 asked for."
    )
    assert refused("--campaign", str(campaign.pk), "--raters", "0") == (
        "--raters must be from 1 to 500, not 0."
    )
    assert refused("--campaign", str(campaign.pk), "--seconds", "0") == (
        "--seconds must be more than 0, not 0."
    )
    assert refused("--campaign", str(campaign.pk), "--time-scale", "-1") == (
        "--time-scale must be 0 or more, not -1."
    )
    assert nothing_made() == ([], 0, 0)


def test_a_site_that_does_not_answer():
    campaign = f.running_campaign(raters=[])

    assert refused("--campaign", str(campaign.pk)) == (
        "No site answers at http://127.0.0.1:9: ConnectionError."
    )
    assert nothing_made() == ([], 0, 0)


def test_enrol_makes_token_only_rater_accounts_that_are_members():
    campaign = f.running_campaign(raters=[])

    enrolled = simulated_raters_enrol(campaign=campaign, seed=5, count=3)

    assert [u.username for u, _ in enrolled] == ["sim-5-0", "sim-5-1", "sim-5-2"]
    assert [Token.objects.get(user=u).key for u, _ in enrolled] == [t for _, t in enrolled]
    assert [u.has_usable_password() for u, _ in enrolled] == [False] * 3
    assert [list(u.groups.values_list("name", flat=True)) for u, _ in enrolled] == [["rater"]] * 3
    assert list(
        CampaignMembership.objects.filter(campaign=campaign)
        .order_by("rater__username")
        .values_list("rater__username", "status")
    ) == [(f"sim-5-{i}", MembershipStatus.ACTIVE) for i in range(3)]
    # The same seed again: the same accounts and tokens, no new rows.
    again = simulated_raters_enrol(campaign=campaign, seed=5, count=3)
    assert [(u.pk, t) for u, t in again] == [(u.pk, t) for u, t in enrolled]
    assert nothing_made()[1:] == (3, 3)


def test_enrol_leaves_nothing_when_a_name_is_taken_or_the_campaign_closed_meanwhile():
    campaign = f.running_campaign(raters=[], name="Busy")
    f.user("sim-6-2", ["curator"])

    with pytest.raises(ValidationError) as caught:
        simulated_raters_enrol(campaign=campaign, seed=6, count=4)

    assert caught.value.message_dict == {
        "raters": ["User 'sim-6-2' exists and is not a simulated rater."]
    }
    assert nothing_made() == ([("sim-6-2",)], 0, 0)
    campaign_close(campaign=campaign)
    with pytest.raises(ValidationError) as caught:
        simulated_raters_enrol(campaign=campaign, seed=7, count=2)
    assert caught.value.message_dict == {
        "campaign": [
            f"Campaign {campaign.pk} ('Busy') is closed; simulated raters join running "
            "campaigns only."
        ]
    }
    assert nothing_made() == ([("sim-6-2",)], 0, 0)


def test_world_stickers_are_imported_once_with_some_prompts_wrong():
    stickers = world_stickers_import(source="world-test", count=40, wrong_share=0.5)
    again = world_stickers_import(source="world-test", count=40, wrong_share=0.5)

    assert [s.candidate.pk for s in again] == [s.candidate.pk for s in stickers]
    assert len({s.candidate.sha256 for s in stickers}) == 40
    wrong = [s for s in stickers if s.prompt_wrong]
    assert 10 <= len(wrong) <= 30
    first = stickers[0].candidate
    assert (first.kind, first.width, first.height, first.import_source) == (
        "sticker",
        64,
        64,
        "world-test",
    )
    # A right prompt names what is drawn; a wrong one names something else.
    for s in stickers:
        asked = parse(s.candidate.raw_prompt)
        drawn = (s.spec.subject, s.spec.colour, s.spec.expression)
        assert ((asked["subject"], asked["colour"], asked["expression"]) != drawn) == (
            s.prompt_wrong
        )
