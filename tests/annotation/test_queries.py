"""Query counts of the campaign pages, pinned and independent of how many rows they list."""

import uuid

import pytest

from annotation.quality.services.membership import raters_add
from annotation.services.items import campaign_items_add
from annotation.services.rating import item_next_for_rater, judgment_submit
from tests import factories as f
from tests.conftest import get_ok

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(site, curator):
    return site(curator)


def test_campaign_list(browser, flat_queries):
    raters = [f.rater(), f.rater()]

    def grow(n):
        for _ in range(n):
            f.running_campaign(raters=raters, n_items=2, overlap=2)

    flat_queries(
        grow=grow, read=lambda: get_ok(browser, "/campaigns/", "/api/campaigns/"), count=17
    )


def test_campaign_page(browser, flat_queries):
    campaign = f.running_campaign(raters=[], n_items=1)

    def grow(n):
        campaign_items_add(
            campaign=campaign, candidate_groups=[[f.sticker()] for _ in range(n)], seed=1
        )
        raters_add(campaign=campaign, raters=[f.rater() for _ in range(n)])

    flat_queries(grow=grow, read=lambda: get_ok(browser, f"/campaigns/{campaign.pk}/"), count=16)


def test_rater_home(site, rater, flat_queries):
    client = site(rater)

    def grow(n):
        for _ in range(n):
            campaign = f.running_campaign(raters=[rater], n_items=2)
            item_next_for_rater(campaign=campaign, rater=rater)

    flat_queries(grow=grow, read=lambda: get_ok(client, "/rate/", "/api/rate/campaigns/"), count=14)


def test_rating_page_and_rater_progress(site, rater, flat_queries):
    """The counters cost the same however many items the campaign has and the rater judged."""
    campaign = f.running_campaign(raters=[rater], n_items=1, preset="style")
    client = site(rater)

    def grow(n):
        campaign_items_add(
            campaign=campaign, candidate_groups=[[f.sticker()] for _ in range(n)], seed=1
        )
        for item in item_next_for_rater(campaign=campaign, rater=rater, count=n):
            judgment_submit(
                item=item,
                rater=rater,
                answers={"style_pass": True},
                client_id=uuid.uuid4(),
                seconds_on_item=2,
            )

    flat_queries(
        grow=grow,
        read=lambda: get_ok(
            client, f"/rate/{campaign.pk}/", f"/api/campaigns/{campaign.pk}/rate/progress/"
        ),
        count=18,
    )
