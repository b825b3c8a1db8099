"""Item ids, and the order the rating step serves items in, say nothing about the model.

A set campaign (set-of-N, scene diversity) shows in each item samples of one prompt by one
model, and its groups are built prompt by prompt, one model after the other. Raters see item
ids, and one rater is served items oldest first; so items are created in a seeded random order.
Checked from outside over HTTP, with exact tests against a random order of the same labels.
"""

import json
import uuid
from itertools import pairwise
from math import comb

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Campaign, ItemCandidate
from annotation.services.campaigns import campaign_create
from generation.models import Candidate
from tests import factories as f

pytestmark = pytest.mark.django_db

PROMPTS = 100
SAMPLES = 3
# Two sided, so a fair order fails this test once in a thousand seeds.
ALPHA = 0.001


def runs(labels: list) -> int:
    """Maximal blocks of equal neighbours: ``AABAB`` has 4."""
    return 1 + sum(x != y for x, y in pairwise(labels))


def runs_distribution(n1: int, n2: int) -> dict[int, float]:
    """P(R = r) for the runs of a uniformly random order of n1 + n2 labels (Wald–Wolfowitz)."""
    total = comb(n1 + n2, n1)
    dist = {}
    for k in range(1, min(n1, n2) + 1):
        dist[2 * k] = 2 * comb(n1 - 1, k - 1) * comb(n2 - 1, k - 1) / total
        dist[2 * k + 1] = (
            comb(n1 - 1, k) * comb(n2 - 1, k - 1) + comb(n1 - 1, k - 1) * comb(n2 - 1, k)
        ) / total
    return dist


def first_half_distribution(n1: int, n2: int) -> dict[int, float]:
    """P(X = x) for the count of n1's labels among the first half of a random order: the
    labels are drawn without replacement, so hypergeometric (narrower than a binomial)."""
    half, total = (n1 + n2) // 2, comb(n1 + n2, (n1 + n2) // 2)
    return {x: comb(n1, x) * comb(n2, half - x) / total for x in range(min(n1, half) + 1)}


def central_interval(dist: dict[int, float]) -> tuple[int, int]:
    """The narrowest [low, high] leaving at most ALPHA / 2 probability on each side."""
    values = sorted(dist)
    below = 0.0
    low = values[0]
    for value in values:
        if below + dist[value] > ALPHA / 2:
            low = value
            break
        below += dist[value]
    above = 0.0
    high = values[-1]
    for value in reversed(values):
        if above + dist[value] > ALPHA / 2:
            high = value
            break
        above += dist[value]
    return low, high


def test_the_intervals_hold_99_9_percent_of_random_orders():
    runs_dist = runs_distribution(100, 100)
    assert abs(sum(runs_dist.values()) - 1) < 1e-12
    assert central_interval(runs_dist) == (78, 124)
    assert sum(p for r, p in runs_dist.items() if 78 <= r <= 124) >= 1 - ALPHA
    half_dist = first_half_distribution(100, 100)
    assert abs(sum(half_dist.values()) - 1) < 1e-12
    assert central_interval(half_dist) == (38, 62)
    assert sum(p for x, p in half_dist.items() if 38 <= x <= 62) >= 1 - ALPHA


def login(user, password: str) -> Client:
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


def step(client: Client, campaign, **body) -> dict:
    response = client.post(
        f"/api/campaigns/{campaign.pk}/rate/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_item_ids_and_serving_order_do_not_follow_the_model():
    """200 sets of 3 (100 prompts, two model versions), made as chunks make them: every
    candidate of model A, then every one of model B. Built from a selection by a curator and
    rated to the end by one rater, over the API."""
    a, b = f.model_version("model-a"), f.model_version("model-b")
    prompts = list(f.prompt_set([f"scene {i}" for i in range(PROMPTS)]).prompts.order_by("id"))
    Candidate.objects.bulk_create(
        Candidate(
            kind="sticker",
            model_version=version,
            prompt=prompt,
            seed=seed,
            raw_prompt=prompt.text,
            file=f"candidates/1/{uuid.uuid4().hex}.png",
            width=64,
            height=64,
            sha256="0" * 64,
        )
        for version in (a, b)
        for prompt in prompts
        for seed in range(SAMPLES)
    )
    rater = f.user("rita", ["rater"])
    campaign = campaign_create(name="scenes", kind="set", raters=[rater])
    curator = APIClient()
    curator.force_authenticate(f.user("cora", ["curator"]))
    made = curator.post(
        f"/api/campaigns/{campaign.pk}/items/from-selection/",
        {"model_versions": [a.pk, b.pk], "group_size": SAMPLES, "seed": 17},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["created"] == 2 * PROMPTS
    assert Campaign.objects.get(pk=campaign.pk).selection["seed"] == 17
    assert curator.post(f"/api/campaigns/{campaign.pk}/start/").status_code == 200
    # when: the rater judges every item, one at a time, as the screen serves them
    client = login(rater, f.PASSWORD)
    served = []
    out = step(client, campaign, fetch=1)
    while out["items"]:
        [item] = out["items"]
        served.append(item["id"])
        submit = {
            "item": item["id"],
            "client_id": str(uuid.uuid4()),
            "seconds_on_item": 2.0,
            "answers": {"diversity": 3},
        }
        out = step(client, campaign, fetch=1, submit=submit)
    # then: each item once, and one model per item
    assert sorted(served) == sorted(made.json()["item_ids"])
    models = dict(
        ItemCandidate.objects.filter(item__campaign=campaign, position=0).values_list(
            "item_id", "candidate__model_version_id"
        )
    )
    assert sorted(models.values()).count(a.pk) == PROMPTS
    runs_low, runs_high = central_interval(runs_distribution(PROMPTS, PROMPTS))
    half_low, half_high = central_interval(first_half_distribution(PROMPTS, PROMPTS))
    for order in (sorted(served), served):
        labels = [models[item_id] == a.pk for item_id in order]
        # Built prompt by prompt (A, B, A, B, ...), ids in creation order would give 200 runs.
        assert runs_low <= runs(labels) <= runs_high, runs(labels)
        assert half_low <= sum(labels[:PROMPTS]) <= half_high, sum(labels[:PROMPTS])
