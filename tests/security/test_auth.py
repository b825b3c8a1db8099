"""Logins are throttled per username and address; API tokens expire and can be revoked."""

import logging
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed logins for this account or address."
BAD_LOGIN = {"non_field_errors": ["Unable to log in with provided credentials."]}


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_MAX_ATTEMPTS = 3
    settings.LOGIN_MAX_ATTEMPTS_PER_IP = 5
    settings.LOGIN_LOCKOUT_SECONDS = 900
    settings.TOKEN_TTL_HOURS = 720


def _token(client, username="rater", password=PASSWORD):
    return client.post("/api/auth/token/", {"username": username, "password": password})


def test_the_right_password_is_refused_after_too_many_wrong_ones(rater):
    client = APIClient()
    for _ in range(3):
        response = _token(client, password="wrong")
        assert (response.status_code, response.json()) == (400, BAD_LOGIN)
    response = _token(client)
    assert response.status_code == 429
    assert response.json() == {"detail": f"{LOCKED} Expected available in 900 seconds."}
    assert response["Retry-After"] == "900"
    assert Token.objects.count() == 0


def test_each_lockout_is_logged(rater, caplog):
    client = APIClient()
    with caplog.at_level(logging.WARNING, logger="stickerloop.login_throttle"):
        for _ in range(3):
            _token(client, password="wrong")
    assert [r.getMessage() for r in caplog.records if r.name == "stickerloop.login_throttle"] == [
        "Login locked for 900 seconds after 3 failures: user 'rater' (from 127.0.0.1)"
    ]


def test_the_lock_ends_after_the_lockout(rater, monkeypatch):
    client = APIClient()
    for _ in range(3):
        _token(client, password="wrong")
    assert _token(client).status_code == 429
    later = time.time() + 901
    monkeypatch.setattr(time, "time", lambda: later)
    assert _token(client).status_code == 200


def test_a_right_password_clears_the_username_count(rater):
    client = APIClient()
    for _ in range(2):
        _token(client, password="wrong")
    assert _token(client).status_code == 200
    for _ in range(2):
        _token(client, password="wrong")
    assert _token(client).status_code == 200


def test_one_address_is_locked_across_usernames(rater, curator):
    client = APIClient()
    for name in ["a", "b", "c", "d", "e"]:
        assert _token(client, username=name, password="x").status_code == 400
    response = _token(client, username="curator", password=PASSWORD)
    assert response.status_code == 429
    # another address is not locked
    other = APIClient(REMOTE_ADDR="10.0.0.2")
    assert _token(other, username="curator", password=PASSWORD).status_code == 200


def test_the_login_page_is_throttled_too(rater):
    client = Client()
    for _ in range(3):
        response = client.post("/login/", {"username": "rater", "password": "wrong"})
        assert response.status_code == 200
        assert b"Your username and password didn't match." in response.content
    response = client.post("/login/", {"username": "rater", "password": PASSWORD})
    assert response.status_code == 429
    assert (
        b"Too many failed logins for this account or address. Try again in 900 seconds."
        in response.content
    )
    assert "_auth_user_id" not in client.session
    # the page and the API share the count
    assert _token(APIClient()).status_code == 429


def test_the_login_page_still_logs_in(rater):
    client = Client()
    response = client.post("/login/", {"username": "rater", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(rater.pk)


def test_a_token_comes_with_its_expiry(rater):
    response = _token(APIClient())
    assert response.status_code == 200
    token = Token.objects.get(user=rater)
    expires = (token.created + timedelta(hours=720)).isoformat().replace("+00:00", "Z")
    assert response.json() == {"token": token.key, "expires_at": expires}
    # asked again, the same token
    assert _token(APIClient()).json()["token"] == token.key


def test_an_expired_token_is_401_and_a_new_login_replaces_it(rater):
    key = _token(APIClient()).json()["token"]
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=721))
    me = APIClient().get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
    assert me.status_code == 401
    assert me.json() == {
        "detail": "The token has expired; ask for a new one at POST /api/auth/token/."
    }
    assert me["WWW-Authenticate"] == "Token"
    fresh = _token(APIClient()).json()["token"]
    assert fresh != key
    assert list(Token.objects.values_list("key", flat=True)) == [fresh]
    me = APIClient().get("/api/me/", HTTP_AUTHORIZATION=f"Token {fresh}")
    assert me.status_code == 200


def test_a_revoked_token_is_401(rater):
    key = _token(APIClient()).json()["token"]
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post("/api/auth/token/revoke/")
    assert response.status_code == 204
    assert Token.objects.count() == 0
    me = client.get("/api/me/")
    assert (me.status_code, me.json()) == (401, {"detail": "Invalid token."})


def test_revoking_needs_a_login():
    response = APIClient().post("/api/auth/token/revoke/")
    assert response.status_code == 403


def test_a_browser_without_a_token_keeps_its_403(rater):
    assert APIClient().get("/api/me/").status_code == 403


def test_the_admin_login_is_throttled_too(admin_user):
    client = Client()
    for _ in range(3):
        response = client.post(
            "/admin/login/", {"username": admin_user.username, "password": "wrong"}
        )
        assert response.status_code == 200
    response = client.post("/admin/login/", {"username": admin_user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.content == (
        b"Too many failed logins for this account or address. Try again in 900 seconds."
    )
    assert "_auth_user_id" not in client.session


def test_the_admin_login_still_logs_in(admin_user):
    client = Client()
    response = client.post("/admin/login/", {"username": admin_user.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_user.pk)
