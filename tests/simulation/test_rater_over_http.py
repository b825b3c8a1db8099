"""One simulated rater against the live server: it leases, downloads, answers, skips and undoes
through the same API calls as the rating screen, and the database holds what it says it did."""

import random
import time

import pytest

from annotation.models import Judgment, Lease
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_add
from generation.world.oracle import Oracle
from simulation.client import RatingClient
from simulation.judge import Judge
from simulation.profiles import Profile
from simulation.rater import RaterResult, SimulatedRater
from simulation.services import simulated_raters_enrol, world_stickers_import

pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = 8


def test_a_rater_answers_skips_and_undoes_through_the_api(live_server):
    stickers = world_stickers_import(source="one rater", count=ITEMS, wrong_share=0.5)
    campaign = campaign_create(name="One rater", kind="single", preset="alignment")
    campaign_items_add(campaign=campaign, candidate_groups=[[s.candidate] for s in stickers])
    campaign_start(campaign=campaign)
    [(user, token)] = simulated_raters_enrol(campaign=campaign, seed=9, count=1)
    # Always right, and undoing or skipping often, so that one short run does both.
    profile = Profile("test", accuracy=1.0, error="other", undo_rate=0.5, skip_rate=0.25)
    result = RaterResult(index=0, username=user.username, profile=profile.name)
    rater = SimulatedRater(
        client=RatingClient(base_url=live_server.url, token=token, campaign_id=campaign.pk),
        judge=Judge(Oracle.load()),
        profile=profile,
        rng=random.Random(4),
        result=result,
        deadline=time.monotonic() + 60,
        patience=1.0,
    )

    rater.run()

    assert result.stopped == "no item came for 1 s"
    assert result.refusals == []
    assert result.undos >= 1 and result.skips >= 1
    # One row per item, skipped or judged as the rater's standing says; undone answers gone.
    stored = {j.item_id: j.skipped for j in Judgment.objects.filter(campaign=campaign, rater=user)}
    assert stored == {item: standing is None for item, standing in result.standing.items()}
    assert len(stored) == ITEMS
    assert result.skips == sum(stored.values())
    # Always right: every answer is what the oracle sees.
    assert result.accuracy == 1.0
    assert Lease.objects.filter(campaign=campaign, released=False).count() == 0
