"""Each role reaches the generation APIs it needs and is refused the others."""

import pytest

pytestmark = pytest.mark.django_db

READS = ["/api/model-versions/", "/api/prompt-sets/", "/api/batches/", "/api/candidates/"]


@pytest.mark.parametrize("path", READS)
def test_rater_is_refused_generation_reads(api, rater, path):
    response = api(rater).get(path)
    assert response.status_code == 403
    assert response.json() == {"detail": "Your role does not allow this."}


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("role", ["curator", "engineer", "admin_user"])
def test_staff_roles_read_generation(api, request, role, path):
    assert api(request.getfixturevalue(role)).get(path).status_code == 200


@pytest.mark.parametrize("path", [*READS, "/api/me/"])
def test_anonymous_is_refused(api, path):
    assert api(None).get(path).status_code in (401, 403)


def test_only_engineers_register_models(api, rater, curator, engineer, tmp_path):
    payload = {"name": "x", "kind": "image", "uri": str(tmp_path)}
    assert (
        api(rater).post("/api/model-versions/register/", payload, format="json").status_code == 403
    )
    assert (
        api(curator).post("/api/model-versions/register/", payload, format="json").status_code
        == 403
    )
    # An engineer is allowed in and gets the folder check, not a 403.
    assert (
        api(engineer).post("/api/model-versions/register/", payload, format="json").status_code
        == 400
    )


def test_raters_cannot_import_or_create_batches(api, rater):
    client = api(rater)
    assert (
        client.post(
            "/api/prompt-sets/import/", {"name": "x", "content": "a"}, format="json"
        ).status_code
        == 403
    )
    assert client.post("/api/batches/create/", {}, format="json").status_code == 403
    assert client.post("/api/batches/1/cancel/").status_code == 403


def test_token_authentication(client, rater):
    response = client.post("/api/auth/token/", {"username": "rater", "password": "pw-rater"})
    assert response.status_code == 200
    token = response.json()["token"]
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {token}")
    assert me.json() == {"username": "rater", "roles": ["rater"]}


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("rater", "/batches/", 403),
        ("curator", "/batches/", 200),
        ("engineer", "/candidates/", 200),
        ("rater", "/rate/", 200),
        ("curator", "/models/", 200),
    ],
)
def test_pages_by_role(client, request, role, path, status):
    client.force_login(request.getfixturevalue(role))
    assert client.get(path).status_code == status


def test_pages_need_login(client):
    response = client.get("/batches/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/batches/"


def test_schema_and_docs_are_served(api, curator):
    schema = api(curator).get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/batches/create/" in schema.content
    assert api(curator).get("/api/docs/").status_code == 200
