"""Ways around the site: the favicon, error pages with the site's navigation, a way back from
the API docs, campaign and quality pages linked both ways, model versions as links, and a rating
campaign made from a batch's page."""

import re

import pytest
from django.test import Client, RequestFactory
from django.urls import get_resolver

from annotation.models import Campaign, Item
from annotation.quality.services.results import campaign_results_compute
from generation.models import GenerationBatch
from tests import factories as f
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db


def _links(response) -> set[str]:
    return set(re.findall(r'href="([^"]+)"', response.content.decode()))


def test_favicon_answers_where_browsers_ask_and_pages_name_it():
    client = Client()
    icon = client.get("/favicon.ico")
    assert (icon.status_code, icon["Location"]) == (301, "/static/favicon.svg")
    svg = client.get("/static/favicon.svg")
    assert (svg.status_code, svg["Content-Type"]) == (200, "image/svg+xml")
    assert b"<svg" in b"".join(svg.streaming_content)
    login = client.get("/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in login


def test_404_is_the_sites_page_with_a_way_home(rater):
    anonymous = Client().get("/no-such-page/")
    assert anonymous.status_code == 404
    assert [t.name for t in anonymous.templates][:2] == ["404.html", "base.html"]
    html = anonymous.content.decode()
    assert "<h1>Nothing here</h1>" in html
    assert "<code>/no-such-page/</code>" in html
    assert '<a class="button primary" href="/">Go to your start page</a>' in html
    # Signed in, the page carries the role's navigation.
    signed_in = logged_in(rater).get("/no-such-page/")
    assert signed_in.status_code == 404
    assert "/rate/" in _links(signed_in)


def test_403_names_the_reason_and_leads_on(rater):
    response = logged_in(rater).get("/batches/")
    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    html = response.content.decode()
    assert "<p>Your role does not allow this page.</p>" in html
    assert {"/", "/rate/", "/login/?next=/batches/"} <= _links(response)


def test_500_renders_without_the_database(django_assert_num_queries):
    handler = get_resolver().resolve_error_handler(500)
    with django_assert_num_queries(0):
        response = handler(RequestFactory().get("/anything/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "<h1>Something went wrong on our side</h1>" in html
    assert '<a class="button primary" href="/">Go to your start page</a>' in html
    assert '<link rel="icon" href="/static/favicon.svg"' in html


def test_the_api_docs_lead_back_to_the_site():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<nav class="docs-nav" aria-label="Site">' in html
    assert {"/", "/api/schema/", "/static/favicon.svg"} <= _links(response)


def test_campaign_and_quality_pages_link_to_each_other(curator):
    rater = f.rater()
    campaign = f.running_campaign(raters=[rater], n_items=1, kind="single", name="Linked")
    client = logged_in(curator)
    assert f"/quality/campaigns/{campaign.pk}/" in _links(client.get(f"/campaigns/{campaign.pk}/"))
    assert f"/quality/campaigns/{campaign.pk}/" in _links(client.get("/campaigns/"))
    assert f"/campaigns/{campaign.pk}/" in _links(client.get(f"/quality/campaigns/{campaign.pk}/"))
    assert f"/campaigns/{campaign.pk}/" in _links(client.get("/quality/"))


def test_pair_leaderboard_links_models_and_the_campaign(curator):
    old, new = f.model_version("v-old"), f.model_version("v-new")
    raters = f.raters(2)
    groups = []
    for i in range(2):
        p = f.prompt(f"pair {i}")
        groups.append([f.sticker(version=old, on_prompt=p), f.sticker(version=new, on_prompt=p)])
    campaign = f.running_campaign(raters=raters, kind="pair", groups=groups, overlap=2)
    for item in Item.objects.filter(campaign=campaign):
        for rater in raters:
            f.judge(item, rater, {"alignment": "left", "style": "left", "overall": "tie"})
    campaign_results_compute(campaign=campaign, methods=["majority"], n_bootstrap=10)
    links = _links(logged_in(curator).get(f"/quality/campaigns/{campaign.pk}/leaderboard/"))
    assert {
        f"/campaigns/{campaign.pk}/",
        f"/training/models/{old.pk}/",
        f"/training/models/{new.pk}/",
    } <= links
    assert f"/quality/campaigns/{campaign.pk}/leaderboard/" in _links(
        logged_in(curator).get(f"/campaigns/{campaign.pk}/")
    )


def test_model_versions_are_links_to_their_page(curator):
    base = f.model_version("base-v")
    child = f.model_version("child-v")
    child.parent = base
    child.save(update_fields=["parent"])
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1], total=1, status="succeeded")
    batch.model_versions.add(child)
    f.sticker(version=child, batch=batch)
    client = logged_in(curator)
    assert {f"/training/models/{base.pk}/", f"/training/models/{child.pk}/"} <= _links(
        client.get("/models/")
    )
    for page in ("/batches/", f"/batches/{batch.pk}/", f"/candidates/?batch={batch.pk}"):
        assert f"/training/models/{child.pk}/" in _links(client.get(page)), page


def test_a_campaign_made_from_a_batch_offers_its_candidates(curator):
    # given: a batch of three stickers, and its page
    batch = GenerationBatch.objects.create(
        name="frogs", kind="sticker", seeds=[1], total=3, status="succeeded"
    )
    stickers = [f.sticker(batch=batch) for _ in range(3)]
    client = logged_in(curator)
    assert f"/campaigns/new/?batch={batch.pk}" in _links(client.get(f"/batches/{batch.pk}/"))
    # when: the curator follows the link, keeps the suggested name and saves
    form = client.get(f"/campaigns/new/?batch={batch.pk}")
    assert form.context["form"].initial["name"] == f"Batch {batch.pk}: frogs"
    assert f'<input type="hidden" name="batch" value="{batch.pk}"' in form.content.decode()
    created = client.post(
        f"/campaigns/new/?batch={batch.pk}",
        {
            "name": f"Batch {batch.pk}: frogs",
            "kind": "single",
            "presets": ["alignment"],
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
            "batch": batch.pk,
        },
    )
    campaign = Campaign.objects.get(name=f"Batch {batch.pk}: frogs")
    # then: the campaign's page has the batch selected in its items form
    assert (created.status_code, created["Location"]) == (
        302,
        f"/campaigns/{campaign.pk}/?batch={batch.pk}",
    )
    page = client.get(created["Location"])
    assert page.context["selection_form"]["batches"].value() == [batch.pk]
    assert f'<option value="{batch.pk}" selected>' in page.content.decode()
    client.post(f"/campaigns/{campaign.pk}/items/", {"batches": [batch.pk]})
    assert sorted(c for item in campaign.items.all() for c in item.candidate_ids_in_order()) == [
        s.pk for s in stickers
    ]


def test_a_batch_that_does_not_exist_is_not_carried(curator):
    client = logged_in(curator)
    for value in ("999999", "x"):
        form = client.get(f"/campaigns/new/?batch={value}")
        assert form.status_code == 200
        assert "batch" not in form.context["form"].initial
    refused = client.post(
        "/campaigns/new/",
        {
            "name": "c",
            "kind": "single",
            "presets": ["alignment"],
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
            "batch": 999999,
        },
    )
    assert refused.status_code == 400
    assert refused.context["form"].errors == {
        "batch": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert Campaign.objects.count() == 0
