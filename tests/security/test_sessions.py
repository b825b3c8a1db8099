"""A login ends after 8 hours unused, 24 hours after it began however busy, and at logout, each
time on the server (ASVS 3.3.1, 3.3.2); the cookie is HttpOnly and SameSite=Lax (3.4.2, 3.4.3).
Time passes by editing the stored session, not by sleeping."""

import time
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stickerloop.sessions import REFRESHED, STARTED
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

IDLE = 8 * 3600
SESSION_WRITE = 'UPDATE "django_session"'


def _login(user) -> tuple[Client, str]:
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return client, client.cookies["sessionid"].value


def _edit(key: str, **seconds_ago: int) -> None:
    """Move the session's stamps back by ``seconds_ago`` (its expiry stays where it was)."""
    expire_date = Session.objects.get(pk=key).expire_date
    session = SessionStore(session_key=key)
    for name, ago in seconds_ago.items():
        session[name] -= ago
    session.save()
    Session.objects.filter(pk=key).update(expire_date=expire_date)


def _session_writes(client, path) -> tuple:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response, [q["sql"] for q in queries.captured_queries if SESSION_WRITE in q["sql"]]


def test_the_session_cookie_is_httponly_lax_and_lasts_the_idle_time(rater):
    client = Client()
    response = client.post("/login/", {"username": "rater", "password": PASSWORD})
    cookie = response.cookies["sessionid"]
    assert (cookie["httponly"], cookie["samesite"], cookie["max-age"]) == (True, "Lax", IDLE)
    row = Session.objects.get(pk=cookie.value)
    left = (row.expire_date - timezone.now()).total_seconds()
    assert IDLE - 5 < left <= IDLE
    data = row.get_decoded()
    now = time.time()
    assert now - 5 < data[STARTED] == data[REFRESHED] <= now


def test_a_session_idle_for_longer_than_the_age_is_refused(rater):
    client, key = _login(rater)
    assert client.get("/api/me/").status_code == 200
    # when: the row's expiry passes, as it does after 8 hours without a save
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    # then
    assert client.get("/api/me/").status_code == 403
    response = client.get("/rate/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/rate/")


def test_a_session_in_use_is_not_written_until_five_minutes_passed(rater):
    client, key = _login(rater)
    expire_date = Session.objects.get(pk=key).expire_date
    response, writes = _session_writes(client, "/api/me/")
    assert (response.status_code, writes) == (200, [])
    assert "sessionid" not in response.cookies
    assert Session.objects.get(pk=key).expire_date == expire_date


def test_a_session_in_use_moves_its_expiry_every_five_minutes(rater):
    client, key = _login(rater)
    _edit(key, **{STARTED: 3600, REFRESHED: 300})
    started = SessionStore(session_key=key)[STARTED]
    Session.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(hours=1))
    # when
    response, writes = _session_writes(client, "/api/me/")
    # then: one write, a fresh idle time, a fresh cookie; the login time stays
    assert (response.status_code, len(writes)) == (200, 1)
    assert response.cookies["sessionid"]["max-age"] == IDLE
    row = Session.objects.get(pk=key)
    left = (row.expire_date - timezone.now()).total_seconds()
    assert IDLE - 5 < left <= IDLE
    data = row.get_decoded()
    assert time.time() - 5 < data[REFRESHED] <= time.time()
    assert data[STARTED] == started
    # and the next request writes nothing
    assert _session_writes(client, "/api/me/")[1] == []


def test_a_busy_session_ends_24_hours_after_its_login(rater):
    client, key = _login(rater)
    _edit(key, **{STARTED: 24 * 3600, REFRESHED: 60})
    # when
    response = client.get("/rate/")
    # then: the row is gone and the request was anonymous
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/rate/")
    assert not Session.objects.filter(pk=key).exists()
    assert client.get("/api/me/").status_code == 403


def test_a_session_just_short_of_24_hours_goes_on(rater):
    client, key = _login(rater)
    _edit(key, **{STARTED: 24 * 3600 - 60, REFRESHED: 60})
    assert client.get("/api/me/").status_code == 200
    assert Session.objects.filter(pk=key).exists()


def test_logging_out_deletes_the_session_on_the_server(rater):
    client, key = _login(rater)
    stolen = Client()
    stolen.cookies["sessionid"] = key
    assert stolen.get("/api/me/").status_code == 200
    # when
    response = client.post("/logout/")
    # then
    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert not Session.objects.filter(pk=key).exists()
    assert stolen.get("/api/me/").status_code == 403
    assert client.get("/api/me/").status_code == 403


def test_logging_in_again_restarts_the_clock(rater):
    client, key = _login(rater)
    _edit(key, **{STARTED: 23 * 3600, REFRESHED: 60})
    response = client.post("/login/", {"username": "rater", "password": PASSWORD})
    assert response.status_code == 302
    # Django keeps the key when the same user logs in again; the clock restarts all the same.
    assert client.cookies["sessionid"].value == key
    data = Session.objects.get(pk=key).get_decoded()
    assert time.time() - 5 < data[STARTED] <= time.time()


def test_a_session_made_outside_a_request_is_left_as_it_is(rater):
    # force_login writes the session directly: it has no stamps, so it is not refreshed (it
    # ends at its expiry) and the pinned query counts of the page tests hold.
    client = Client()
    client.force_login(rater)
    response, writes = _session_writes(client, "/api/me/")
    assert (response.status_code, writes) == (200, [])
    assert "sessionid" not in response.cookies


def test_the_admin_login_starts_the_clocks_too(admin_user):
    client = Client()
    response = client.post("/admin/login/", {"username": admin_user.username, "password": PASSWORD})
    assert response.status_code == 302
    data = Session.objects.get(pk=client.cookies["sessionid"].value).get_decoded()
    now = time.time()
    assert now - 5 < data[STARTED] == data[REFRESHED] <= now
