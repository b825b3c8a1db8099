"""What a refusal says, how a token and a session get in, and the schema pages.

Who may call which endpoint is tests/security/test_roles.py's: the role × endpoint matrix over
every URL pattern.
"""

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_refusal_names_the_role(api, rater):
    response = api(rater).get("/api/batches/")
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "Your role does not allow this."},
    )


def test_token_authentication(client, rater):
    response = client.post("/api/auth/token/", {"username": "rater", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["token"]
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {token}")
    assert me.json() == {"username": "rater", "roles": ["rater"]}


def test_pages_need_login(client):
    response = client.get("/batches/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/batches/"


def test_schema_and_docs_are_served(api, curator):
    schema = api(curator).get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/batches/create/" in schema.content
    assert api(curator).get("/api/docs/").status_code == 200
