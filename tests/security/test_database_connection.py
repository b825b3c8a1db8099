"""A persistent database connection the server dropped costs no request (CONN_HEALTH_CHECKS)."""

import json
import threading
import time
from collections import Counter

import psycopg2
import pytest
import requests
from django.db import OperationalError, close_old_connections, connection
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from stickerloop.middleware import DatabaseUnavailableMiddleware
from stickerloop.services import token_issue
from tests import factories

pytestmark = pytest.mark.postgresql


def _terminate(pid: int) -> None:
    other = psycopg2.connect(**connection.get_connection_params())
    other.autocommit = True
    with other.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cur.fetchone() == (True,)
        for _ in range(100):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cur.fetchone() == (0,):
                break
            time.sleep(0.05)
    other.close()


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_is_replaced_before_the_next_request(rater):
    client = APIClient(HTTP_AUTHORIZATION=f"Token {token_issue(user=rater).key}")
    assert client.get("/api/me/").status_code == 200
    pid = connection.connection.get_backend_pid()
    # given: the server ends the web process's connection between two requests
    _terminate(pid)
    # when: the next request starts (the test client leaves out this request_started receiver)
    close_old_connections()
    response = client.get("/api/me/")
    # then: answered on a new connection
    assert (response.status_code, response.json()) == (
        200,
        {"username": "rater", "roles": ["rater"]},
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


@pytest.mark.django_db(transaction=True)
def test_a_healthy_reused_connection_is_checked_without_a_query():
    """The health check of an idle connection that received nothing asks the socket, not the
    server: no SELECT 1 round trip per request (stickerloop.postgresql)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last request'")
        pid = connection.connection.get_backend_pid()
    # when: a request starts and opens its first cursor, where Django runs the health check
    close_old_connections()
    assert connection.health_check_done is False
    connection.cursor().close()
    # then: checked, on the same connection, and the server saw no statement since
    assert (connection.health_check_done, connection.connection.get_backend_pid()) == (True, pid)
    other = psycopg2.connect(**connection.get_connection_params())
    with other.cursor() as cur:
        cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        assert cur.fetchone() == ("SELECT 'the last request'",)
    other.close()


# Under load: the server drops the app's connections while requests are in flight -------------

LOAD_SECONDS = 6
CLIENTS = 6
KILL_ROUNDS = 5


def _kill_app_connections(spare_pid: int) -> int:
    """End every other connection to the test database (the live server's), as a failover or an
    operator's pg_terminate_backend would; returns how many were ended."""
    other = psycopg2.connect(**connection.get_connection_params())
    other.autocommit = True
    with other.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [spare_pid],
        )
        [ended] = cur.fetchone()
    other.close()
    return ended


@pytest.mark.django_db(transaction=True)
@pytest.mark.load
def test_no_request_answers_500_while_the_database_drops_connections(live_server):
    """Clients call the rating API, a staff list and a page while the app's connections are
    ended five times; a request whose connection broke answers 503 with Retry-After
    (stickerloop.middleware.DatabaseUnavailableMiddleware), never 500, and calls after the
    drops succeed on new connections."""
    raters = [factories.rater(f"load-{i}") for i in range(CLIENTS)]
    curator = factories.user("load-curator", ["curator"])
    campaign = factories.running_campaign(raters=raters, n_items=12, overlap=2)
    page = Client()
    page.force_login(raters[0])
    session_cookie = page.cookies["sessionid"].value
    tokens = [token_issue(user=u).key for u in [*raters, curator]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [test_pid] = cursor.fetchone()

    statuses: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def record(method: str, path: str, response) -> None:
        with lock:
            statuses[response.status_code] += 1
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{method} {path}: {response.status_code}")

    def guarded(loop):
        def run(token: str) -> None:
            try:
                loop(token)
            except Exception as exc:  # a dropped client connection or a timeout
                with lock:
                    failures.append(repr(exc))

        return run

    @guarded
    def rater_loop(token: str) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"
        calls = [
            ("post", f"/api/campaigns/{campaign.pk}/next/"),
            ("get", f"/api/campaigns/{campaign.pk}/held/"),
            ("get", "/api/rate/campaigns/"),
        ]
        while not stop.is_set():
            for method, path in calls:
                record(method, path, getattr(http, method)(live_server.url + path, timeout=10))

    @guarded
    def staff_loop(token: str) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"
        browser = requests.Session()
        browser.cookies.set("sessionid", session_cookie)
        while not stop.is_set():
            for path in ("/api/campaigns/", f"/api/campaigns/{campaign.pk}/progress/"):
                record("get", path, http.get(live_server.url + path, timeout=10))
            record("get", "/rate/", browser.get(live_server.url + "/rate/", timeout=10))

    ended = []

    def killer() -> None:
        for _ in range(KILL_ROUNDS):
            time.sleep(LOAD_SECONDS / (KILL_ROUNDS + 1))
            ended.append(_kill_app_connections(test_pid))

    threads = [threading.Thread(target=rater_loop, args=(t,)) for t in tokens[:-1]]
    threads.append(threading.Thread(target=staff_loop, args=(tokens[-1],)))
    for thread in threads:
        thread.start()
    killing = threading.Thread(target=killer)
    killing.start()
    killing.join()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert sum(ended) > 0, "no connection was in use when the killer ran"
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 50, statuses
    # And once the database is steady, every call succeeds again.
    http = requests.Session()
    http.headers["Authorization"] = f"Token {tokens[-1]}"
    assert http.get(live_server.url + "/api/campaigns/", timeout=10).status_code == 200


def test_a_query_on_a_broken_connection_answers_503_with_retry_after():
    """The answer itself: JSON on the API, text on pages, with Retry-After."""
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    broken = OperationalError("server closed the connection unexpectedly")
    api = middleware.process_exception(RequestFactory().get("/api/me/"), broken)
    assert (api.status_code, api["Retry-After"], json.loads(api.content)) == (
        503,
        "1",
        {"detail": "The database is unavailable for a moment; try again."},
    )
    page = middleware.process_exception(RequestFactory().get("/rate/"), broken)
    assert (page.status_code, page["Retry-After"], page.content) == (
        503,
        "1",
        b"The database is unavailable for a moment; try again.",
    )
    assert middleware.process_exception(RequestFactory().get("/"), ValueError()) is None
