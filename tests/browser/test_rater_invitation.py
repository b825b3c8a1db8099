"""The admin's journey in Debian's Chromium: make a rater on the raters page, hand over the
one-time link; the rater follows it, chooses a password, logs in and rates an item; the link
then no longer works. Keyboard and mouse only, no API call from the test."""

import urllib.request

import pytest
from django.contrib.auth import get_user_model

from annotation.models import Judgment
from tests import factories as f
from tests.browser import screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a long password for nina"


def test_an_admin_invites_a_rater_who_sets_a_password_and_rates(live_server, page):
    # given: an admin, and a running alignment campaign with no raters yet
    f.user("boss", ["admin"])
    campaign = f.running_campaign(raters=[], n_items=2, preset="alignment", name="Align")

    # The server's first request imports every app's views (the model code among them): 8 s on
    # the loaded 2-core machine, near the page's 10 s navigation timeout. Warm it first.
    urllib.request.urlopen(f"{live_server.url}/login/", timeout=60).read()

    # when: the admin makes the rater from the raters page, in the campaign
    screen.log_in(live_server, page, "boss", "/")
    page.click("nav >> text=Raters")
    page.click("text=New rater")
    page.fill("#id_username", "nina")
    page.get_by_label("Align").check()
    with page.expect_navigation():
        page.click("button:has-text('Create the rater')")
    link = page.input_value("#set-password-link input")
    assert "Align" in page.text_content("#rater-campaigns")
    page.reload()
    assert page.locator("#set-password-link").count() == 0
    with page.expect_navigation():
        page.click("button:has-text('Log out')")

    # and: the rater follows the link and chooses a password
    page.goto(link)
    assert "Your account is nina" in page.text_content("main")
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    with page.expect_navigation():
        page.click("button:has-text('Set my password')")
    assert "Your password is set: log in with it." in page.text_content("main")

    # then: they log in, find the campaign in their queue and rate one item with the keys
    page.fill("#id_username", "nina")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    with page.expect_navigation():
        page.click(f"a[href='/rate/{campaign.pk}/']")
    item = screen.item(page)
    page.keyboard.press("y")
    page.keyboard.press("Enter")
    screen.wait_item_change(page, item)
    screen.wait_sent(page)
    nina = get_user_model().objects.get(username="nina")
    [judgment] = Judgment.objects.filter(campaign=campaign, rater=nina)
    assert (judgment.item_id, judgment.answers) == (item, {"aligned": True})

    # and: the link, used once, is refused
    page.goto(link)
    assert "This link has been used already or has expired" in page.text_content("main")
