"""Ways around the site: the favicon, error pages with the site's navigation and a way back from
the API docs."""

import re

import pytest
from django.test import Client, RequestFactory
from django.urls import get_resolver

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
