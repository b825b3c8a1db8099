"""No input reaches the database as a 500: NUL, ids and integers past bigint, deep or big JSON."""

import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotation.models import Campaign, Judgment
from generation.models import PromptSet
from tests import factories

pytestmark = pytest.mark.django_db

NUL = "Null characters are not allowed."
BIG = 2**63


def _step(client, campaign, **body):
    return client.post(f"/api/campaigns/{campaign.pk}/rate/", body, format="json")


@pytest.fixture
def leased(api):
    """A rater's client, their running campaign and the id of the item they hold."""
    rater = factories.rater()
    campaign = factories.running_campaign(raters=[rater], n_items=2)
    client = api(rater)
    item = _step(client, campaign, fetch=1).json()["items"][0]["id"]
    return client, campaign, item


def _submission(item, **fields):
    return {"item": item, "client_id": str(uuid.uuid4()), "seconds_on_item": 2.0, **fields}


def test_nul_in_skip_reason_is_400_naming_the_field(leased):
    client, campaign, item = leased
    submit = _submission(item, skipped=True, skip_reason="bad\x00image")
    response = _step(client, campaign, submit=submit, fetch=0)
    assert response.status_code == 400
    assert response.json() == {"submit.skip_reason": [NUL]}
    assert Judgment.objects.count() == 0


def test_nul_in_a_nested_answer_names_its_path(leased):
    client, campaign, item = leased
    submit = _submission(item, answers={"style_pass": True, "note": "a\x00"})
    response = _step(client, campaign, submit=submit, fetch=0)
    assert response.status_code == 400
    assert response.json() == {"submit.answers.note": [NUL]}
    assert Judgment.objects.count() == 0


def test_nul_in_a_list_item_and_in_a_key(api, curator):
    client = api(curator)
    url = "/api/campaigns/create/"
    listed = client.post(url, {"name": "x", "tags": ["ok", "b\x00"]}, format="json")
    keyed = client.post(url, {"name": "x", "a\x00b": 1}, format="json")
    assert (listed.status_code, listed.json()) == (400, {"tags.1": [NUL]})
    assert (keyed.status_code, keyed.json()) == (400, {"a\\x00b": [NUL]})
    assert Campaign.objects.count() == 0


def test_nul_in_a_question_label_stores_no_campaign(api, curator):
    schema = {"questions": [{"id": "ok", "type": "boolean", "label": "Fine\x00?"}]}
    response = api(curator).post(
        "/api/campaigns/create/", {"name": "labels", "question_schema": schema}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"question_schema.questions.0.label": [NUL]}
    assert Campaign.objects.count() == 0


def test_an_item_id_past_bigint_is_400_naming_it(leased):
    client, campaign, _ = leased
    response = _step(client, campaign, submit=_submission(BIG), fetch=0)
    assert response.status_code == 400
    assert response.json() == {
        "submit.item": ["Must be between -9223372036854775808 and 9223372036854775807."]
    }
    assert Judgment.objects.count() == 0


@pytest.mark.parametrize("pk", [BIG, 10**30])
def test_ids_past_bigint_in_urls_are_404(api, curator, pk):
    client = Client()
    client.force_login(curator)
    assert client.get(f"/rate/{pk}/").status_code == 404
    assert client.get(f"/campaigns/{pk}/").status_code == 404
    assert api(curator).get(f"/api/campaigns/{pk}/").status_code == 404
    assert api(curator).post(f"/api/campaigns/{pk}/rate/", {}, format="json").status_code == 404


def test_the_largest_id_is_an_ordinary_404(api, curator):
    response = api(curator).get(f"/api/campaigns/{BIG - 1}/")
    assert response.status_code == 404


def test_nul_in_a_query_parameter(api, curator):
    response = api(curator).get("/api/candidates/", {"batch": "1\x00"})
    assert (response.status_code, response.json()) == (400, {"batch": [NUL]})


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deep_json_is_400_on_any_api(api, curator, depth):
    body = "[" * depth + "]" * depth
    response = api(curator).generic(
        "POST", "/api/campaigns/create/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON may nest at most 32 levels."}
    assert Campaign.objects.count() == 0


def test_json_at_the_depth_limit_reaches_the_view(api, curator):
    nested = {"name": "deep", "question_schema": json.loads("[" * 31 + "]" * 31)}
    response = api(curator).post("/api/campaigns/create/", nested, format="json")
    assert response.status_code == 400
    assert "detail" not in response.json()


def test_the_api_takes_the_body_the_gate_decoded():
    from django.test import RequestFactory
    from rest_framework.request import Request

    from stickerloop.api import CheckedJSONParser

    django_request = RequestFactory().post(
        "/api/x/", '{"fetch": 1}', content_type="application/json"
    )
    django_request.checked_json = {"fetch": 2}
    request = Request(django_request, parsers=[CheckedJSONParser()])

    assert request.data == {"fetch": 2}


def test_a_body_the_gate_did_not_decode_is_parsed_as_drf_does():
    from django.test import RequestFactory
    from rest_framework.request import Request

    from stickerloop.api import CheckedJSONParser

    django_request = RequestFactory().post(
        "/api/x/", '{"fetch": 1}', content_type="application/json"
    )
    request = Request(django_request, parsers=[CheckedJSONParser()])

    assert request.data == {"fetch": 1}


def test_nan_in_an_api_body_is_still_refused_by_the_parser(api, curator):
    response = api(curator).generic(
        "POST", "/api/campaigns/create/", '{"name": NaN}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")
    assert Campaign.objects.count() == 0


def test_deep_json_to_a_page_is_a_text_400(curator):
    client = Client()
    client.force_login(curator)
    response = client.generic(
        "POST", "/campaigns/new/", "[" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.content == b"JSON may nest at most 32 levels."


def test_a_json_body_over_the_limit_is_400(api, curator):
    body = json.dumps({"name": "x" * (2_621_440 - 11)})
    assert len(body) == 2_621_441
    response = api(curator).generic(
        "POST", "/api/campaigns/create/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "The request body is over 2.5 MiB (2,621,440 bytes)."}


def test_nul_in_a_form_page_names_the_field(curator):
    client = Client()
    client.force_login(curator)
    upload = SimpleUploadedFile("p.txt", b"a cat\n")
    response = client.post("/prompt-sets/", {"name": "bad\x00name", "file": upload})
    assert response.status_code == 400
    assert response.content == f"name: {NUL}".encode()
    assert PromptSet.objects.count() == 0


def test_media_directory_key_is_404(curator, settings):
    (settings.MEDIA_ROOT / "candidates").mkdir(parents=True)
    (settings.MEDIA_ROOT / "candidates" / "a.png").write_bytes(b"png")
    client = Client()
    client.force_login(curator)
    assert client.get("/media/candidates").status_code == 404
    assert client.get("/media/candidates/").status_code == 404
    response = client.get("/media/candidates/a.png")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"png"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        *(("/api/candidates/", p) for p in ("batch", "prompt", "prompt_set", "model_version")),
        ("/api/candidates/", "source"),
        ("/api/dataset-exports/", "version"),
        ("/api/dataset-audit/", "version"),
        ("/api/dataset-audit/", "export"),
        ("/api/dataset-versions/", "rule"),
        ("/api/weak-imports/", "source"),
        ("/api/experiments/", "model_version"),
        ("/api/experiments/", "job"),
    ],
)
def test_query_ids_past_the_largest_id_are_400_naming_them(api, engineer, path, param):
    # No primary key is larger: the filter is refused before the database sees the number (on
    # SQLite, the database of `make run`, its driver cannot even send it).
    response = api(engineer).get(path, {param: str(10**20)})
    assert (response.status_code, response.json()) == (
        400,
        {param: [f"Ensure this value is less than or equal to {2**63 - 1}."]},
    )
    assert api(engineer).get(path, {param: str(2**63 - 1)}).status_code == 200


def test_a_candidate_tag_filter_is_capped_to_the_column(api, curator):
    response = api(curator).get("/api/candidates/", {"tag": "t" * 65})
    assert response.status_code == 400
    assert response.json() == {"tag": ["Ensure this field has no more than 64 characters."]}


def test_a_value_the_database_refuses_is_a_400_not_a_500():
    from django.db import DataError

    from stickerloop.api import exception_handler

    response = exception_handler(DataError("integer out of range"), {})
    assert (response.status_code, response.data) == (
        400,
        {"detail": "A value does not fit its database column."},
    )


@pytest.mark.parametrize(
    "path",
    ["/api/batches/progress/", "/api/training-jobs/progress/", "/api/dataset-exports/progress/"],
)
@pytest.mark.parametrize("ids", [f"1,{10**20}", "1,-1", "1,x"])
def test_progress_ids_that_are_not_ids_are_400(api, engineer, path, ids):
    response = api(engineer).get(path, {"ids": ids})
    assert (response.status_code, response.json()) == (
        400,
        {"ids": [f"Must be comma-separated ids: integers from 0 to {2**63 - 1}."]},
    )
    assert (api(engineer).get(path, {"ids": f"1,{2**63 - 1}"}).json()) == []


def test_gallery_filters_past_bigint_show_nothing(engineer):
    client = Client()
    client.force_login(engineer)
    response = client.get("/candidates/", {"batch": str(10**20), "prompt": str(10**20)})
    assert response.status_code == 200
    assert len(response.context["page"].object_list) == 0


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON may nest at most 32 levels."),
        ('[{"key": "x", "type": "boolean", "label": "a\\u0000"}]', f"0.label: {NUL}"),
    ],
)
def test_the_campaign_page_checks_its_json_textarea(curator, schema, error):
    client = Client()
    client.force_login(curator)
    response = client.post(
        "/campaigns/new/",
        {
            "name": "custom",
            "kind": "single",
            "presets": ["custom"],
            "question_schema": schema,
            "overlap": 1,
            "lease_seconds": 600,
            "gold_rate": 0,
        },
    )
    assert response.status_code == 400
    assert response.context["form"].errors["question_schema"] == [error]
    assert Campaign.objects.count() == 0


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 19])
@pytest.mark.parametrize(
    "path",
    [
        "/candidates/?batch=",
        "/candidates/?model_version=",
        "/campaigns/new/?batch=",
        "/training/experiments/?model_version=",
        "/training/experiments/?job=",
    ],
)
def test_page_filters_that_are_not_ids_are_ignored_not_500(curator, path, value):
    # "²" and Arabic-Indic digits pass str.isdigit but not int(); 19 digits pass int() but not
    # the database's bigint. A page filter that is not an id filters nothing.
    client = Client()
    client.force_login(curator)
    assert client.get(path + value).status_code == 200


@pytest.mark.parametrize("path", ["/api/dataset-exports/", "/api/weak-imports/"])
@pytest.mark.parametrize("value", ["²", "abc"])
def test_a_list_filter_that_is_not_a_number_is_400_naming_it(api, curator, path, value):
    param = "version" if "exports" in path else "source"
    response = api(curator).get(path, {param: value})
    assert (response.status_code, response.json()) == (
        400,
        {param: ["A valid integer is required."]},
    )
