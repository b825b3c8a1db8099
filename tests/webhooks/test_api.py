"""The webhook API over HTTP: registering (the secret shown once), bad input naming the field,
rotation, test delivery, the delivery log, redelivery, and who may call it."""

import uuid
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from stickerloop import events
from stickerloop.services import token_issue
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from webhooks.services.deliveries import delivery_attempt
from webhooks.services.endpoints import endpoint_create
from webhooks.services.events import event_record

pytestmark = pytest.mark.django_db


def _token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user).key}")
    return client


def test_a_curator_registers_an_endpoint_and_sees_its_secret_once(api, curator, receiver):
    client = api(curator)

    created = client.post(
        reverse("api-webhook-endpoint-create"),
        {
            "url": receiver.url(),
            "events": [events.EXPORT_READY, events.BATCH_FINISHED],
            "description": "CI scheduler",
        },
        format="json",
    )

    assert created.status_code == 201
    body = created.json()
    endpoint = Endpoint.objects.get()
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert len(body["secret"]) == len("whsec_") + 43
    # The catalog's order, whatever the order given.
    assert (body["url"], body["events"], body["description"], body["is_active"]) == (
        receiver.url(),
        ["batch.finished", "export.ready"],
        "CI scheduler",
        True,
    )
    assert body["created_by"] == curator.pk
    detail = client.get(reverse("api-webhook-endpoint-detail", kwargs={"pk": endpoint.pk}))
    listed = client.get(reverse("api-webhook-endpoint-list"))
    for shown in (detail.json(), listed.json()["results"][0]):
        assert "secret" not in shown
        assert endpoint.secret not in str(shown)
        assert shown["id"] == endpoint.pk


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"url": "ftp://example.org/in", "events": ["export.ready"]},
            "url",
            "Only http and https URLs are allowed, not 'ftp'.",
        ),
        (
            {"url": "http://10.0.0.5/in", "events": ["export.ready"]},
            "url",
            "10.0.0.5 is a private address; webhooks may call only public addresses "
            "(STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
        (
            {"url": "http://169.254.169.254/latest", "events": ["export.ready"]},
            "url",
            "169.254.169.254 is a link-local address; webhooks may call only public addresses "
            "(STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
        (
            {"url": "https://93.184.216.34/in", "events": ["export.ready", "batch.exploded"]},
            "events",
            "Unknown event(s): 'batch.exploded'. Known: batch.finished, batch.failed, "
            "campaign.completed, item_load.succeeded, item_load.failed, "
            "dataset_version.published, export.ready, training_job.succeeded, "
            "training_job.failed, training_job.cancelled, evaluation.ready, rater.paused.",
        ),
        (
            {"url": "https://93.184.216.34/in", "events": ["webhook.test"]},
            "events",
            "Unknown event(s): 'webhook.test'. Known: batch.finished, batch.failed, "
            "campaign.completed, item_load.succeeded, item_load.failed, "
            "dataset_version.published, export.ready, training_job.succeeded, "
            "training_job.failed, training_job.cancelled, evaluation.ready, rater.paused.",
        ),
        (
            {"url": "https://93.184.216.34/in", "events": []},
            "events",
            "Choose at least one event: batch.finished, batch.failed, campaign.completed, "
            "item_load.succeeded, item_load.failed, "
            "dataset_version.published, export.ready, training_job.succeeded, "
            "training_job.failed, training_job.cancelled, evaluation.ready, rater.paused.",
        ),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_stores_nothing(
    api, curator, settings, data, field, message
):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    answer = api(curator).post(reverse("api-webhook-endpoint-create"), data, format="json")

    assert (answer.status_code, answer.json()) == (400, {field: [message]})
    assert Endpoint.objects.count() == 0


def test_a_missing_url_or_events_is_400_naming_each(api, curator):
    answer = api(curator).post(reverse("api-webhook-endpoint-create"), {}, format="json")

    assert (answer.status_code, sorted(answer.json())) == (400, ["events", "url"])


def test_update_rotate_disable_enable_and_delete(api, engineer, receiver):
    client = api(engineer)
    endpoint, secret = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    path = {"pk": endpoint.pk}

    updated = client.post(
        reverse("api-webhook-endpoint-update", kwargs=path),
        {"events": [events.TRAINING_JOB_FAILED, events.TRAINING_JOB_SUCCEEDED]},
        format="json",
    )
    refused = client.post(
        reverse("api-webhook-endpoint-update", kwargs=path),
        {"url": "gopher://example.org/"},
        format="json",
    )
    rotated = client.post(
        reverse("api-webhook-endpoint-rotate-secret", kwargs=path),
        {"overlap_hours": 2},
        format="json",
    )
    too_long = client.post(
        reverse("api-webhook-endpoint-rotate-secret", kwargs=path),
        {"overlap_hours": 169},
        format="json",
    )
    disabled = client.post(reverse("api-webhook-endpoint-disable", kwargs=path))
    twice = client.post(reverse("api-webhook-endpoint-disable", kwargs=path))
    enabled = client.post(reverse("api-webhook-endpoint-enable", kwargs=path))

    assert (updated.status_code, updated.json()["events"], updated.json()["url"]) == (
        200,
        ["training_job.succeeded", "training_job.failed"],
        receiver.url(),
    )
    assert (refused.status_code, refused.json()) == (
        400,
        {"url": ["Only http and https URLs are allowed, not 'gopher'."]},
    )
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != secret and new == Endpoint.objects.get(pk=endpoint.pk).secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert (too_long.status_code, too_long.json()) == (
        400,
        {"overlap_hours": ["Must be an integer from 0 to 168."]},
    )
    assert (disabled.status_code, disabled.json()["is_active"]) == (200, False)
    assert disabled.json()["disabled_reason"] == f"Disabled by {engineer.get_username()}."
    assert (twice.status_code, twice.json()) == (
        409,
        {"detail": f"Endpoint {endpoint.pk} is disabled already."},
    )
    assert (enabled.status_code, enabled.json()["is_active"]) == (200, True)
    assert enabled.json()["disabled_reason"] == ""

    deleted = client.post(reverse("api-webhook-endpoint-delete", kwargs=path))
    assert deleted.status_code == 204
    assert Endpoint.objects.count() == 0


def test_test_delivery_log_and_redelivery(api, curator, receiver):
    client = api(curator)
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(500)
    [delivery] = event_record(
        event_id=uuid.uuid4(),
        name=events.EXPORT_READY,
        object_type="dataset_export",
        object_id=9,
        occurred_at=datetime(2025, 2, 1, tzinfo=UTC),
        data={"format": "parquet", "dataset_version": 4},
    )
    delivery_attempt(delivery_id=delivery.pk, number=1)

    pending = client.post(reverse("api-webhook-delivery-redeliver", kwargs={"pk": delivery.pk}))
    delivery_attempt(delivery_id=delivery.pk, number=2)
    redelivered = client.post(reverse("api-webhook-delivery-redeliver", kwargs={"pk": delivery.pk}))
    tested = client.post(reverse("api-webhook-endpoint-test", kwargs={"pk": endpoint.pk}))
    detail = client.get(reverse("api-webhook-delivery-detail", kwargs={"pk": delivery.pk}))
    listed = client.get(reverse("api-webhook-delivery-list", kwargs={"pk": endpoint.pk}))
    only_tests = client.get(
        reverse("api-webhook-delivery-list", kwargs={"pk": endpoint.pk}) + "?status=pending"
    )
    bad_filter = client.get(
        reverse("api-webhook-delivery-list", kwargs={"pk": endpoint.pk}) + "?status=lost"
    )

    assert (pending.status_code, pending.json()) == (
        409,
        {"detail": f"Delivery {delivery.pk} is still pending."},
    )
    assert (redelivered.status_code, redelivered.json()["status"]) == (202, "pending")
    assert tested.status_code == 202
    assert (tested.json()["event"]["type"], tested.json()["status"]) == ("webhook.test", "pending")
    body = detail.json()
    assert body["event"]["object_url"] == "https://stickers.example.org/api/dataset-exports/9/"
    assert body["event"]["data"] == {"format": "parquet", "dataset_version": 4}
    assert [
        (a["number"], a["status_code"], a["response_excerpt"]) for a in body["attempt_log"]
    ] == [(1, 500, '{"got": 1}'), (2, 200, '{"got": 2}')]
    assert all(a["latency_ms"] > 0 for a in body["attempt_log"])
    assert [d["id"] for d in listed.json()["results"]] == [
        tested.json()["id"],
        delivery.pk,
    ]
    assert {d["status"] for d in only_tests.json()["results"]} == {"pending"}
    assert (bad_filter.status_code, bad_filter.json()) == (
        400,
        {"status": ["Must be one of pending, sending, succeeded, failed."]},
    )
    event_types = client.get(reverse("api-webhook-event-types")).json()
    assert [e["type"] for e in event_types][:2] == ["batch.finished", "batch.failed"]
    assert len(event_types) == 12


def test_the_list_shows_each_endpoints_last_deliveries_in_three_queries(
    api, curator, receiver, django_assert_num_queries
):
    client = api(curator)
    for n in range(3):
        endpoint_create(url=receiver.url(f"/{n}"), events=[events.EXPORT_READY])
    for _ in range(12):
        event_record(
            event_id=uuid.uuid4(),
            name=events.EXPORT_READY,
            object_type="dataset_export",
            object_id=1,
            occurred_at=datetime(2025, 2, 1, tzinfo=UTC),
            data={},
        )
    client.get(reverse("api-webhook-endpoint-list"))  # the session and user, loaded once

    # count, endpoints (with their creators), deliveries (with their events)
    with django_assert_num_queries(3):
        answer = client.get(reverse("api-webhook-endpoint-list"))

    rows = answer.json()["results"]
    assert [len(row["recent_deliveries"]) for row in rows] == [10, 10, 10]
    assert {d["event_type"] for row in rows for d in row["recent_deliveries"]} == {"export.ready"}


def test_raters_and_anonymous_callers_are_refused_everywhere(rater, receiver):
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    [delivery] = event_record(
        event_id=uuid.uuid4(),
        name=events.EXPORT_READY,
        object_type="dataset_export",
        object_id=1,
        occurred_at=datetime(2025, 2, 1, tzinfo=UTC),
        data={},
    )
    calls = [
        ("get", reverse("api-webhook-event-types")),
        ("get", reverse("api-webhook-endpoint-list")),
        ("post", reverse("api-webhook-endpoint-create")),
        ("get", reverse("api-webhook-endpoint-detail", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-update", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-rotate-secret", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-disable", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-enable", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-test", kwargs={"pk": endpoint.pk})),
        ("post", reverse("api-webhook-endpoint-delete", kwargs={"pk": endpoint.pk})),
        ("get", reverse("api-webhook-delivery-list", kwargs={"pk": endpoint.pk})),
        ("get", reverse("api-webhook-delivery-detail", kwargs={"pk": delivery.pk})),
        ("post", reverse("api-webhook-delivery-redeliver", kwargs={"pk": delivery.pk})),
    ]
    as_rater, anonymous = _token_client(rater), APIClient()

    answers = [
        (
            getattr(as_rater, m)(u, {}, format="json").status_code,
            getattr(anonymous, m)(u).status_code,
        )
        for m, u in calls
    ]

    assert answers == [(403, 403)] * len(calls)
    assert (Endpoint.objects.count(), Event.objects.count(), Delivery.objects.count()) == (1, 1, 1)
    assert Endpoint.objects.get().secret == endpoint.secret
    assert DeliveryAttempt.objects.count() == 0
