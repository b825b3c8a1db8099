"""A persistent database connection the server dropped costs no request (CONN_HEALTH_CHECKS)."""

import time

import psycopg2
import pytest
from django.db import close_old_connections, connection
from rest_framework.test import APIClient

from stickerloop.services import token_issue


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
