"""Changing one's own password (ASVS 2.1.5 and 2.1.6), over HTTP."""

from django.contrib.auth import get_user_model
from django.test import Client

from tests import factories as f
from tests.conftest import logged_in

NEW = "a longer sticker passphrase"


def test_a_user_changes_their_password_with_the_current_one(rater):
    client = logged_in(rater)
    page = client.get("/account/password/")
    assert page.status_code == 200
    assert b"Change your password" in page.content
    response = client.post(
        "/account/password/",
        {"old_password": f.PASSWORD, "new_password1": NEW, "new_password2": NEW},
    )
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/account/password/").status_code == 200  # still logged in
    assert Client().login(username=rater.username, password=NEW)
    assert not Client().login(username=rater.username, password=f.PASSWORD)


def test_a_wrong_current_or_weak_new_password_changes_nothing(rater):
    client = logged_in(rater)
    wrong = client.post(
        "/account/password/",
        {"old_password": "not my password", "new_password1": NEW, "new_password2": NEW},
    )
    assert wrong.status_code == 400
    assert wrong.context["form"].errors == {
        "old_password": ["Your old password was entered incorrectly. Please enter it again."]
    }
    weak = client.post(
        "/account/password/",
        {"old_password": f.PASSWORD, "new_password1": "short", "new_password2": "short"},
    )
    assert weak.status_code == 400
    assert weak.context["form"].errors == {
        "new_password2": [
            "This password is too short. It must contain at least 12 characters.",
        ]
    }
    assert b'value="short"' not in weak.content
    user = get_user_model().objects.get(pk=rater.pk)
    assert user.check_password(f.PASSWORD)


def test_the_page_needs_a_login():
    response = Client().get("/account/password/")
    assert (response.status_code, response["Location"]) == (
        302,
        "/login/?next=/account/password/",
    )
