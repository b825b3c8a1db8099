"""The quality API (JSON and CSV, roles, bad input) and the pages with their inline plots."""

import csv
import io
import re

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Campaign
from annotation.quality.models import AggregationRun, QualityPolicy
from annotation.quality.services.membership import rater_pause
from annotation.quality.services.results import campaign_results_compute
from annotation.quality.services.runs import aggregation_run_execute, aggregation_run_request
from generation.models import ModelVersion
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged():
    """A binary campaign: two items, three raters, one paused."""
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=3)
    a, b = f.items(camp, 2)
    r = f.raters(3, campaign=camp)
    for rater, v in zip(r, [True, True, False], strict=True):
        f.judge(a, rater, {"ok": v})
        f.judge(b, rater, {"ok": not v})
    campaign_results_compute(campaign=camp, methods=["majority", "dawid_skene"])
    rater_pause(campaign=camp, rater_id=r[2].pk, reason="Off-topic answers.")
    return camp, (a, b), r


def test_tables_as_json_and_csv(api, curator, judged):
    camp, (a, b), r = judged
    client = api(curator)

    agreement = client.get(reverse("api-quality-agreement", args=[camp.pk])).json()
    assert [
        (row["question_key"], row["level"], row["n_items"], row["n_judgments"]) for row in agreement
    ] == [("ok", "nominal", 2, 6)]
    assert agreement[0]["distribution"] == [
        {"value": True, "label": "Yes", "count": 3},
        {"value": False, "label": "No", "count": 3},
    ]

    consensus = client.get(
        reverse("api-quality-consensus", args=[camp.pk]),
        {"question_key": "ok", "method": "majority"},
    ).json()
    assert [(row["item"], row["label"], row["confidence"], row["is_tie"]) for row in consensus] == [
        (a.pk, True, round(2 / 3, 6), False),
        (b.pk, False, round(2 / 3, 6), False),
    ]

    page = client.get(
        reverse("api-quality-consensus", args=[camp.pk]),
        {"question_key": "ok", "offset": 1, "limit": 1},
    ).json()
    assert [row["item"] for row in page] == [b.pk]

    response = client.get(reverse("api-quality-raters", args=[camp.pk]), {"format": "csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="campaign-{camp.pk}-raters.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["username"], row["status"], row["paused_reason"]) for row in rows] == [
        (r[0].username, "active", ""),
        (r[1].username, "active", ""),
        (r[2].username, "paused", "Off-topic answers."),
    ]


def test_bad_input_is_answered_400_with_the_reason(api, curator, judged):
    camp, _, _ = judged
    client = api(curator)

    response = client.get(
        reverse("api-quality-consensus", args=[camp.pk]), {"question_key": "ok", "method": "median"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "method": [
            "Method 'median' does not fit question 'ok' of type 'binary' (methods that fit: "
            "majority, dawid_skene, glad, mace)."
        ]
    }

    response = client.post(
        reverse("api-quality-compute", args=[camp.pk]), {"methods": ["mean"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "methods": ["Method 'mean' fits none of the campaign's questions (types: binary)."]
    }
    assert not AggregationRun.objects.exists()

    response = client.patch(
        reverse("api-quality-policy", args=[camp.pk]),
        {"min_gold_accuracy": 2, "speed_floor_seconds": -1},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "min_gold_accuracy": ["Must be a number from 0 to 1, not 2.0."],
        "speed_floor_seconds": ["Must be a number of seconds from 0 to 600, not -1.0."],
    }
    assert not QualityPolicy.objects.filter(campaign=camp).exists()

    item = f.items(camp, 1)[0]
    response = client.post(
        reverse("api-quality-gold-set", args=[camp.pk]),
        {"item": item.pk, "gold_answers": {"ok": 3}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"gold_answers.ok": ["Must be true or false."]}
    item.refresh_from_db()
    assert not item.is_gold


def test_roles(api, rater, engineer, judged):
    camp, _, r = judged
    assert api(rater).get(reverse("api-quality-raters", args=[camp.pk])).status_code == 403
    assert api(engineer).get(reverse("api-quality-raters", args=[camp.pk])).status_code == 200
    response = api(engineer).post(
        reverse("api-quality-rater-resume", args=[camp.pk, r[2].pk]), {}, format="json"
    )
    assert response.status_code == 403


def test_policy_pause_resume_and_compute_through_the_api(api, curator, judged):
    camp, _, r = judged
    client = api(curator)

    response = client.patch(
        reverse("api-quality-policy", args=[camp.pk]),
        {"min_gold_accuracy": 0.8, "consensus_method": "dawid_skene"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["min_gold_accuracy"], response.json()["consensus_method"]) == (
        0.8,
        "dawid_skene",
    )

    response = client.post(
        reverse("api-quality-rater-resume", args=[camp.pk, r[2].pk]),
        {"reason": "Fine now."},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["excluded_judgments"] == 2
    response = client.post(
        reverse("api-quality-rater-resume", args=[camp.pk, r[2].pk]), {}, format="json"
    )
    assert response.status_code == 409

    response = client.post(reverse("api-quality-compute", args=[camp.pk]), {}, format="json")
    assert response.status_code == 202
    again = client.post(reverse("api-quality-compute", args=[camp.pk]), {}, format="json")
    assert again.json()["id"] == response.json()["id"]  # a waiting run is joined
    assert response.json()["methods"] == ["majority", "dawid_skene"]


def _pair_campaign():
    camp = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1)
    models = [
        ModelVersion.objects.create(name=n, kind="image", uri=f"/x/{n}")
        for n in ("base-v1", "tuned-v2")
    ]
    rater = f.raters(1)[0]
    # base-v1 wins 8 (6 from the left, 2 from the right), ties 2 and loses 2.
    outcomes = [(0, "left")] * 6 + [(1, "right")] * 2 + [(0, "tie")] * 2 + [(1, "left")] * 2
    for left, outcome in outcomes:
        item = f.items(camp, 1, per_item=2)[0]
        for link in item.item_candidates.all():
            model = models[left] if link.position == 0 else models[1 - left]
            link.candidate.model_version = model
            link.candidate.save(update_fields=["model_version"])
        f.judge(item, rater, {"overall": outcome})
    return camp, models


def test_rankings_api_and_leaderboard_page(api, curator, client: Client):
    camp, models = _pair_campaign()
    campaign_results_compute(campaign=camp, methods=["majority"], n_bootstrap=30)

    rows = api(curator).get(reverse("api-quality-rankings", args=[camp.pk])).json()
    assert [
        (row["rank"], row["model_version"], row["wins"], row["ties"], row["losses"]) for row in rows
    ] == [(1, "base-v1", 8, 2, 2), (2, "tuned-v2", 2, 2, 8)]
    assert rows[0]["ci_low"] <= rows[0]["strength"] <= rows[0]["ci_high"]
    pairs = (
        api(curator).get(reverse("api-quality-rankings", args=[camp.pk]), {"table": "pairs"}).json()
    )
    assert [
        (p["a"], p["b"], p["a_wins"], p["b_wins"], p["ties"], p["a_win_rate"]) for p in pairs
    ] == [("base-v1", "tuned-v2", 8, 2, 2, 0.75)]
    bias = (
        api(curator).get(reverse("api-quality-rankings", args=[camp.pk]), {"table": "bias"}).json()
    )
    assert (bias[0]["left_win_share_decisive"], bias[0]["tie_share"]) == (0.8, 2 / 12)

    client.force_login(curator)
    page = client.get(reverse("quality-leaderboard", args=[camp.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") == 2
    assert "Bradley–Terry strength with 95% bootstrap intervals" in html
    assert 'data-model="base-v1"' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_campaign_quality_page(client: Client, curator, rater, judged):
    camp, _, r = judged
    client.force_login(curator)

    page = client.get(reverse("quality-campaign", args=[camp.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-question="ok"' in html
    assert html.count("<svg") == 3  # answers, and a histogram per consensus method
    assert "Off-topic answers." in html
    assert f'<tr class="paused" data-rater="{r[2].pk}">' in html
    assert "Resume</button>" in html
    client.force_login(rater)
    assert client.get(reverse("quality-campaign", args=[camp.pk])).status_code == 403


def test_resume_from_the_page(client: Client, curator, judged):
    camp, _, r = judged
    client.force_login(curator)

    response = client.post(reverse("quality-rater-resume", args=[camp.pk, r[2].pk]))

    assert response.status_code == 302
    page = client.get(reverse("quality-campaign", args=[camp.pk])).content.decode()
    assert "The rater is resumed." in page
    assert 'class="paused"' not in page


def _live(client, campaign) -> tuple[tuple[str, str], str]:
    """The quality page's live fragment: (data-finished, data-phase), and its text."""
    html = client.get(f"/quality/campaigns/{campaign.pk}/live/").content.decode()
    head = re.match(r'<div id="live" data-finished="(\d)" data-phase="(\w+)">', html)
    return head.groups(), html


def test_the_quality_page_live_part_names_the_newest_results_until_the_campaign_closes(
    site, curator
):
    # given a running campaign with judgments and no computation yet
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=1)
    item = f.items(camp, 1)[0]
    f.judge(item, f.raters(1, campaign=camp)[0], {"ok": True})
    client = site(curator)
    page = client.get(f"/quality/campaigns/{camp.pk}/").content.decode()
    url = f"/quality/campaigns/{camp.pk}/live/"
    assert f'src="/static/js/live.js" data-url="{url}"' in page
    assert page.count('<div id="live" data-finished="0" data-phase="none">') == 1
    state, html = _live(client, camp)
    assert state == ("0", "none") and "<dd>none yet</dd>" in html

    # when a computation is queued the fragment shows it, but the results shown stay the same
    run = aggregation_run_request(campaign=camp, methods=["majority"])
    state, html = _live(client, camp)
    assert state == ("0", "none")
    assert '<span class="status status-queued" title="">queued</span>' in html
    # once it succeeds, its id is the phase: the page reloads for the new results
    aggregation_run_execute(run_id=run.pk)
    state, html = _live(client, camp)
    assert state == ("0", str(run.pk))
    assert '<span class="status status-succeeded" title="">succeeded</span>' in html

    # then a closed campaign with nothing pending stops the polling
    Campaign.objects.filter(pk=camp.pk).update(status="closed")
    assert _live(client, camp)[0] == ("1", str(run.pk))
