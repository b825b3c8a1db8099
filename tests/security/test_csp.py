"""Every response carries the Content-Security-Policy, and no template needs it loosened: no inline
script, style or event handler anywhere (the browser side is tests/browser/test_csp.py)."""

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from stickerloop.csp import content_security_policy
from tests import factories as f
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


def test_pages_api_answers_and_files_carry_the_policy(rater, curator):
    campaign = f.running_campaign(raters=[rater], n_items=1)
    root = get_user_model().objects.create_superuser(username="root", password=f.PASSWORD)
    answers = [
        Client().get("/login/"),
        Client().get("/no-such-page/"),
        Client().get("/static/css/app.css"),
        Client().get("/api/docs/"),
        Client().get("/api/docs/?script="),
        logged_in(rater).get(f"/rate/{campaign.pk}/"),
        logged_in(rater).get("/api/me/"),
        logged_in(curator).get("/batches/"),
        logged_in(curator).get(f"/campaigns/{campaign.pk}/"),
        logged_in(root).get("/admin/auth/user/"),
    ]
    assert [(r.status_code, r["Content-Security-Policy"]) for r in answers] == [
        (200, POLICY),
        (404, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
        (200, POLICY),
    ]


def test_a_bucket_origin_may_serve_images():
    assert content_security_policy(["http://minio:9000", "https://cdn.example.org"]) == (
        "default-src 'self'; img-src 'self' data: http://minio:9000 https://cdn.example.org; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


def test_the_rating_page_hands_its_config_over_as_data(rater):
    campaign = f.running_campaign(raters=[rater], n_items=1)
    html = logged_in(rater).get(f"/rate/{campaign.pk}/").content.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == [
        '<script src="/static/js/timezone.js">',
        '<script id="rate-config" type="application/json">',
        '<script id="rate-progress" type="application/json">',
        '<script type="module" src="/static/annotation/rate/main.js">',
    ]


# What the policy would refuse to run or apply, written into a template.
INLINE = {
    "inline script": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "style element": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def test_no_template_holds_inline_script_or_style():
    found = [
        f"{path.relative_to(TEMPLATES)}: {what}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for what, pattern in INLINE.items()
        if pattern.search(path.read_text())
    ]
    assert found == []
