"""Membership over HTTP: the campaign's raters endpoint and the quality pause and resume
endpoints change a rater's membership through one service, by the same rules, with the same
events and for the same role; a pause takes the same ``exclude`` with the same default from
both (and from the campaign page's form)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import CampaignMembership, Item, Judgment
from annotation.quality.apis.raters import EXCLUDE_HELP
from annotation.quality.models import MembershipEvent
from annotation.quality.services.gold import judgment_gold_score
from annotation.quality.services.membership import rater_pause, rater_resume
from annotation.quality.services.policy import quality_policy_set
from annotation.quality.services.results import campaign_results_compute
from tests import factories as f
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _events(camp, rater):
    return list(
        MembershipEvent.objects.filter(membership__campaign=camp, membership__rater=rater)
        .order_by("created_at", "id")
        .values_list("action", "cause", "reason", "excluded_judgments", "actor__username")
    )


def _membership(camp, rater):
    return CampaignMembership.objects.get(campaign=camp, rater=rater)


def _raters_url(camp):
    return reverse("api-campaign-membership-set", args=[camp.pk])


def _resume_url(camp, rater):
    return reverse("api-quality-rater-resume", args=[camp.pk, rater.pk])


def _pause_url(camp, rater):
    return reverse("api-quality-rater-pause", args=[camp.pk, rater.pk])


@pytest.fixture
def failed_qualification():
    """A campaign that requires a qualification, and a member who answered all three of its
    gold items wrong."""
    qualifier = f.campaign(questions=f.BINARY_SCHEMA, overlap=2)
    qual_gold = f.items(qualifier, 3, gold={i: {"ok": True} for i in range(3)})
    camp = f.campaign(questions=f.BINARY_SCHEMA)
    (newcomer,) = f.raters(1, campaign=camp)
    quality_policy_set(campaign=camp, qualification_campaign=qualifier, qualification_min_gold=3)
    for item in qual_gold:
        judgment_gold_score(judgment_id=f.judge(item, newcomer, {"ok": False}).pk)
    reason = (
        f"Pass the qualification campaign {qualifier.name!r} first: 3 gold items at 80% or "
        "better (so far 3 at 0%)."
    )
    return camp, newcomer, reason


def _gate_pause(camp):
    """The event the qualification gate wrote when the newcomer was paused."""
    name = camp.quality_policy.qualification_campaign.name
    return (
        "paused",
        "qualification",
        f"Pass the qualification campaign {name!r} first: 3 gold items at 80% or better "
        "(so far 0).",
        0,
        None,
    )


@pytest.fixture
def gold_paused():
    """A rater paused automatically for 0 % gold accuracy, with six judgments excluded."""
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=2, max_overlap=4, gold_rate=0.2)
    gold = f.items(camp, 6, gold={i: {"ok": True} for i in range(6)})
    plain = f.items(camp, 4)
    quality_policy_set(campaign=camp, min_gold_judgments=5, min_gold_accuracy=0.7)
    (bad,) = f.raters(1, campaign=camp)
    for item in gold[:5]:
        f.judge(item, bad, {"ok": False})
    f.judge(plain[0], bad, {"ok": False})
    assert campaign_results_compute(campaign=camp, methods=["majority"])["paused"] == [bad.pk]
    assert Judgment.objects.filter(rater=bad, excluded=True).count() == 6
    return camp, bad, plain[0]


def test_raters_endpoint_cannot_resume_a_rater_who_failed_qualification(
    api, curator, failed_qualification
):
    camp, newcomer, reason = failed_qualification
    before = _membership(camp, newcomer)

    response = api(curator).post(
        _raters_url(camp), {"rater": newcomer.username, "status": "active"}, format="json"
    )

    assert (response.status_code, response.json()) == (409, {"detail": reason})
    membership = _membership(camp, newcomer)
    assert (membership.status, membership.paused_reason, membership.paused_at) == (
        "paused",
        before.paused_reason,
        before.paused_at,
    )
    assert _events(camp, newcomer) == [_gate_pause(camp)]


def test_quality_endpoint_refuses_the_same_resume_with_the_same_reason(
    api, curator, failed_qualification
):
    camp, newcomer, reason = failed_qualification

    response = api(curator).post(_resume_url(camp, newcomer), {}, format="json")

    assert (response.status_code, response.json()) == (409, {"detail": reason})
    assert _membership(camp, newcomer).status == "paused"
    assert _events(camp, newcomer) == [_gate_pause(camp)]


def test_campaign_page_form_cannot_resume_a_rater_who_failed_qualification(
    curator, failed_qualification
):
    camp, newcomer, reason = failed_qualification
    client = Client()
    client.force_login(curator)

    response = client.post(
        reverse("campaign-membership", args=[camp.pk]),
        {"rater": newcomer.pk, "status": "active", "reason": ""},
        follow=True,
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [reason]
    assert _membership(camp, newcomer).status == "paused"
    assert _events(camp, newcomer) == [_gate_pause(camp)]


@pytest.mark.parametrize("endpoint", ["raters", "quality"])
def test_gold_paused_rater_resumed_through_either_endpoint_gets_judgments_back(
    api, curator, gold_paused, endpoint
):
    camp, bad, plain_item = gold_paused
    client = api(curator)

    if endpoint == "raters":
        response = client.post(
            _raters_url(camp),
            {"rater": bad.username, "status": "active", "reason": "Talked it through."},
            format="json",
        )
        assert (response.status_code, response.json()["status"]) == (200, "active")
    else:
        response = client.post(
            _resume_url(camp, bad), {"reason": "Talked it through."}, format="json"
        )
        assert (response.status_code, response.json()["action"]) == (200, "resumed")

    membership = _membership(camp, bad)
    assert (membership.status, membership.paused_reason, membership.paused_at) == (
        "active",
        "",
        None,
    )
    assert not Judgment.objects.filter(rater=bad, excluded=True).exists()
    assert Item.objects.get(pk=plain_item.pk).judgment_count == 1
    assert _events(camp, bad) == [
        (
            "paused",
            "gold",
            "Gold accuracy 0% on 5 gold item(s) is below the campaign's 70%.",
            6,
            None,
        ),
        ("resumed", "gold", "Talked it through.", 6, "curator"),
    ]


def test_manual_pause_resume_pause_through_the_raters_endpoint_writes_the_events(api, curator):
    camp = f.campaign(questions=f.BINARY_SCHEMA)
    (rater,) = f.raters(1, campaign=camp)
    client = api(curator)

    def post(**data):
        return client.post(_raters_url(camp), {"rater": rater.username, **data}, format="json")

    no_reason = post(status="paused")
    first = post(status="paused", reason="Answers too fast.")
    again = post(status="paused", reason="Still too fast.")
    resumed = post(status="active")
    second = post(status="paused", reason="Off-topic answers.")

    assert (no_reason.status_code, no_reason.json()) == (
        400,
        {"reason": ["Say why the rater is paused."]},
    )
    assert (first.status_code, first.json()["status"], first.json()["paused_reason"]) == (
        200,
        "paused",
        "Answers too fast.",
    )
    assert (again.status_code, again.json()) == (
        409,
        {"detail": f"Rater {rater.username} is paused already."},
    )
    assert (resumed.status_code, resumed.json()["status"]) == (200, "active")
    assert (second.status_code, second.json()["paused_reason"]) == (200, "Off-topic answers.")
    assert _events(camp, rater) == [
        ("paused", "manual", "Answers too fast.", 0, "curator"),
        ("resumed", "manual", "Resumed.", 0, "curator"),
        ("paused", "manual", "Off-topic answers.", 0, "curator"),
    ]


def test_ml_engineer_gets_403_on_the_raters_endpoint_and_admin_does_not(api, engineer, admin_user):
    camp = f.campaign(questions=f.BINARY_SCHEMA)
    (rater,) = f.raters(1, campaign=camp)
    data = {"rater": rater.username, "status": "paused", "reason": "Answers too fast."}

    refused = api(engineer).post(_raters_url(camp), data, format="json")

    assert refused.status_code == 403
    assert _membership(camp, rater).status == "active"
    assert not MembershipEvent.objects.exists()

    allowed = api(admin_user).post(_raters_url(camp), data, format="json")

    assert (allowed.status_code, allowed.json()["status"]) == (200, "paused")
    assert _events(camp, rater) == [("paused", "manual", "Answers too fast.", 0, "boss")]


def test_ml_engineer_gets_403_on_the_campaign_page_form(engineer):
    camp = f.campaign(questions=f.BINARY_SCHEMA)
    (rater,) = f.raters(1, campaign=camp)
    client = Client()
    client.force_login(engineer)

    response = client.post(
        reverse("campaign-membership", args=[camp.pk]),
        {"rater": rater.pk, "status": "paused", "reason": "Answers too fast."},
    )

    assert response.status_code == 403
    assert _membership(camp, rater).status == "active"
    assert not MembershipEvent.objects.exists()


def test_campaign_page_shows_the_raters_form_to_curators_only(curator, engineer):
    camp = f.campaign(questions=f.BINARY_SCHEMA)
    form_action = reverse("campaign-membership", args=[camp.pk])
    shown = {}
    for user in (curator, engineer):
        client = Client()
        client.force_login(user)
        page = client.get(reverse("campaign-detail", args=[camp.pk]))
        assert page.status_code == 200
        shown[user.username] = f'action="{form_action}"' in page.content.decode()

    assert shown == {"curator": True, "engineer": False}


def _judged_member():
    """A member who judged one item, was paused (keeping it) and resumed, then judged a second
    item: their evaluation window holds the second judgment only."""
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=2)
    items = f.items(camp, 2)
    (rater,) = f.raters(1, campaign=camp)
    f.judge(items[0], rater, {"ok": True}, at=timezone.now() - timedelta(hours=1))
    rater_pause(campaign=camp, rater_id=rater.pk, reason="Checking.", exclude=False)
    rater_resume(campaign=camp, rater_id=rater.pk)
    f.judge(items[1], rater, {"ok": False})
    return camp, rater, items


def _post(entry, curator, camp, rater, status, data):
    """Pause or resume ``rater`` through one entry point; the page form sends ``exclude`` as
    the text of its choice."""
    if entry == "page":
        client = Client()
        client.force_login(curator)
        form = {"rater": rater.pk, "status": status, "reason": "", **data}
        response = client.post(reverse("campaign-membership", args=[camp.pk]), form)
        assert response.status_code == 302
        return
    client = client_for(curator)
    if entry == "raters":
        body = {"rater": rater.username, "status": status, **data}
        response = client.post(_raters_url(camp), body, format="json")
    else:
        url = (_pause_url if status == "paused" else _resume_url)(camp, rater)
        response = client.post(url, data, format="json")
    assert response.status_code == 200, response.json()


def _window(camp, rater) -> str | None:
    """Where the last pause's evaluation window starts: at the resume before it, or nowhere."""
    events = MembershipEvent.objects.filter(membership__campaign=camp, membership__rater=rater)
    pause = events.filter(action="paused").latest("created_at", "id")
    resume = events.filter(action="resumed", created_at__lte=pause.created_at)
    starts = {None: None, resume.latest("created_at", "id").created_at: "last resume"}
    return starts[pause.window_start]


def _outcome(camp, rater, items) -> tuple:
    membership = _membership(camp, rater)
    return (
        membership.status,
        membership.paused_reason,
        _events(camp, rater)[2:],
        _window(camp, rater),
        [Judgment.objects.get(item=i, rater=rater).excluded for i in items],
        [Item.objects.get(pk=i.pk).judgment_count for i in items],
    )


ENTRIES = ("raters", "quality", "page")


@pytest.mark.parametrize(
    "given, page_given, excluded",
    [
        ({}, {}, 1),
        ({"exclude": True}, {"exclude": "True"}, 1),
        ({"exclude": False}, {"exclude": "False"}, 0),
    ],
    ids=["default", "exclude", "keep"],
)
def test_every_entry_point_pauses_and_resumes_alike(curator, given, page_given, excluded):
    outcomes = {}
    for entry in ENTRIES:
        camp, rater, items = _judged_member()
        data = page_given if entry == "page" else given
        _post(entry, curator, camp, rater, "paused", {"reason": "Answers too fast.", **data})
        paused = _outcome(camp, rater, items)
        _post(entry, curator, camp, rater, "active", {"reason": "Talked it through."})
        outcomes[entry] = (paused, _outcome(camp, rater, items))

    assert outcomes == {
        entry: (
            (
                "paused",
                "Answers too fast.",
                [("paused", "manual", "Answers too fast.", excluded, "curator")],
                "last resume" if excluded else None,
                [False, bool(excluded)],
                [1, 1 - excluded],
            ),
            (
                "active",
                "",
                [
                    ("paused", "manual", "Answers too fast.", excluded, "curator"),
                    ("resumed", "manual", "Talked it through.", excluded, "curator"),
                ],
                "last resume" if excluded else None,
                [False, False],
                [1, 1],
            ),
        )
        for entry in ENTRIES
    }


@pytest.mark.parametrize(
    "data, errors",
    [
        ({}, {"reason": ["Say why the rater is paused."]}),
        ({"reason": "  "}, {"reason": ["Say why the rater is paused."]}),
        ({"reason": "x" * 501}, {"reason": ["Ensure this field has no more than 500 characters."]}),
        ({"reason": "Too fast.", "exclude": "maybe"}, {"exclude": ["Must be a valid boolean."]}),
    ],
    ids=["no-reason", "blank-reason", "long-reason", "bad-exclude"],
)
def test_both_endpoints_refuse_the_same_pause_with_the_same_errors(api, curator, data, errors):
    camp, rater, _ = _judged_member()
    before = list(Judgment.objects.filter(rater=rater).values_list("id", "excluded"))
    client = api(curator)

    through_raters = client.post(
        _raters_url(camp), {"rater": rater.username, "status": "paused", **data}, format="json"
    )
    through_quality = client.post(_pause_url(camp, rater), data, format="json")

    assert (through_raters.status_code, through_raters.json()) == (400, errors)
    assert (through_quality.status_code, through_quality.json()) == (400, errors)
    assert _membership(camp, rater).status == "active"
    assert len(_events(camp, rater)) == 2
    assert list(Judgment.objects.filter(rater=rater).values_list("id", "excluded")) == before


def test_the_schema_documents_exclude_alike_on_both_endpoints(api, curator):
    schema = api(curator).get(reverse("api-schema"), {"format": "json"}).json()
    inputs = schema["components"]["schemas"]

    assert [
        inputs[name]["properties"]["exclude"]
        for name in ("QualityRaterPauseInputRequest", "CampaignMembershipSetInputRequest")
    ] == [{"type": "boolean", "default": True, "description": EXCLUDE_HELP}] * 2
