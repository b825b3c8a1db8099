"""Deliveries against a real HTTP receiver on 127.0.0.1: the body and its signature, the order
of attempts and their backoff, timeouts, the retry window, disabling, secret rotation, the
address check at send time, redelivery and recovery. The services run in-process; the worker
runs them in tests/webhooks/test_worker.py."""

import re
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from stickerloop import events
from stickerloop.errors import ServiceConflict
from tests import factories as f
from training_bridge.jobs.models import EvaluationStatus, TrainingJob, TrainingJobEvaluation
from webhooks import signing
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from webhooks.services.deliveries import (
    INTERRUPTED,
    deliveries_recover,
    delivery_attempt,
    delivery_redeliver,
)
from webhooks.services.endpoints import endpoint_create, endpoint_secret_rotate
from webhooks.services.events import endpoint_test_send, event_record

pytestmark = pytest.mark.django_db

EVENT_ID = uuid.UUID("5f0c4a52-2d39-4c1e-9a57-0b7c1d6e8f90")
OCCURRED = datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


def _record(name=events.DATASET_VERSION_PUBLISHED, *, event_id=EVENT_ID, object_id=42, **data):
    return event_record(
        event_id=event_id,
        name=name,
        object_type="dataset_version",
        object_id=object_id,
        occurred_at=OCCURRED,
        data=data,
    )


def _log(delivery: Delivery) -> list[tuple]:
    return [
        (a.number, a.status_code, a.error)
        for a in DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    ]


def test_a_delivery_is_signed_json_naming_the_event_and_its_object(receiver):
    endpoint, secret = endpoint_create(
        url=receiver.url("/hook?team=ml"), events=[events.DATASET_VERSION_PUBLISHED]
    )
    [delivery] = _record(rule=3, number=2)

    delivered = delivery_attempt(delivery_id=delivery.pk, number=1)

    [got] = receiver.requests
    assert got.path == "/hook?team=ml"
    assert got.json == {
        "id": str(EVENT_ID),
        "type": "dataset_version.published",
        "created_at": "2025-01-31T12:00:00.123456Z",
        "object": {
            "type": "dataset_version",
            "id": 42,
            "url": "https://stickers.example.org/api/dataset-versions/42/",
        },
        "data": {"rule": 3, "number": 2},
    }
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Stickerloop-Event"] == "dataset_version.published"
    assert got.headers["Stickerloop-Event-Id"] == str(EVENT_ID)
    assert got.headers["Stickerloop-Delivery"] == f"{delivery.pk}.1"
    assert got.headers["User-Agent"] == "Stickerloop-Webhooks/1"
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", got.headers["Stickerloop-Signature"])
    assert got.verifies(secret)
    assert not got.verifies(secret + "x")
    assert (delivered.status, delivered.attempts, delivered.last_status_code) == (
        "succeeded",
        1,
        200,
    )
    [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.number, attempt.status_code, attempt.response_excerpt, attempt.error) == (
        1,
        200,
        '{"got": 1}',
        "",
    )
    assert 0 < attempt.latency_ms < 1000
    assert Endpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0


def test_the_readme_snippet_verifies_a_real_delivery(receiver):
    """The verification snippet of the README, unchanged, on a delivery as it arrived."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("### Verifying a delivery", 1)[1].split("```python", 1)[1]
    snippet = snippet.split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)
    _, secret = endpoint_create(url=receiver.url(), events=[events.DATASET_VERSION_PUBLISHED])
    [delivery] = _record()
    delivery_attempt(delivery_id=delivery.pk, number=1)
    [got] = receiver.requests

    verify = namespace["verify"]
    assert verify(got.body, got.headers["Stickerloop-Signature"], secret) is True
    assert verify(got.body + b" ", got.headers["Stickerloop-Signature"], secret) is False
    assert verify(got.body, got.headers["Stickerloop-Signature"], "whsec_other") is False


def test_failed_attempts_are_retried_with_doubling_waits_until_one_succeeds(receiver):
    # given: the receiver answers 500, then too late (past the 1 s timeout), then 200
    endpoint, secret = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(500, ("sleep", 2.0, 200), 200)
    [delivery] = _record(events.EXPORT_READY)

    # when: each attempt runs when its message comes (the worker's countdown)
    first = delivery_attempt(delivery_id=delivery.pk, number=1)
    second = delivery_attempt(delivery_id=delivery.pk, number=2)
    third = delivery_attempt(delivery_id=delivery.pk, number=3)

    # then
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert _log(delivery) == [
        (1, 500, ""),
        (2, None, "No answer within 1 s."),
        (3, 200, ""),
    ]
    assert (first.status, first.next_attempt_at - attempts[0].finished_at) == (
        "pending",
        timedelta(seconds=1),
    )
    assert (second.status, second.next_attempt_at - attempts[1].finished_at) == (
        "pending",
        timedelta(seconds=2),
    )
    assert (third.status, third.attempts, third.next_attempt_at) == ("succeeded", 3, None)
    assert attempts[0].started_at < attempts[1].started_at < attempts[2].started_at
    assert attempts[1].latency_ms >= 1000
    bodies = {r.body for r in receiver.wait_for(3, timeout=5)}
    assert len(bodies) == 1  # the same body, so the same event id, on every attempt
    assert all(r.verifies(secret) for r in receiver.requests)
    assert [r.headers["Stickerloop-Delivery"] for r in receiver.requests] == [
        f"{delivery.pk}.1",
        f"{delivery.pk}.2",
        f"{delivery.pk}.3",
    ]
    assert Endpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0


def test_a_message_for_another_attempt_or_a_finished_delivery_does_nothing(receiver):
    endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(500)
    [delivery] = _record(events.EXPORT_READY)

    delivery_attempt(delivery_id=delivery.pk, number=1)
    assert delivery_attempt(delivery_id=delivery.pk, number=1) is None  # a duplicate
    assert delivery_attempt(delivery_id=delivery.pk, number=3) is None  # not its turn
    delivery_attempt(delivery_id=delivery.pk, number=2)
    assert delivery_attempt(delivery_id=delivery.pk, number=3) is None  # succeeded already

    assert len(receiver.requests) == 2
    assert _log(delivery) == [(1, 500, ""), (2, 200, "")]


def test_retries_stop_when_the_next_one_would_fall_outside_the_window(receiver, settings):
    settings.WEBHOOK_RETRY_HOURS = 0
    endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(502)
    [delivery] = _record(events.EXPORT_READY)

    delivered = delivery_attempt(delivery_id=delivery.pk, number=1)

    assert (delivered.status, delivered.next_attempt_at, delivered.last_status_code) == (
        "failed",
        None,
        502,
    )
    assert delivered.finished_at is not None


def test_no_delivery_for_an_event_the_endpoint_did_not_subscribe_to(receiver):
    endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED, events.EXPORT_READY])
    disabled, _ = endpoint_create(
        url=receiver.url("/off"), events=[events.DATASET_VERSION_PUBLISHED]
    )
    Endpoint.objects.filter(pk=disabled.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason="off"
    )

    assert _record(events.DATASET_VERSION_PUBLISHED) == []
    assert _record(events.CAMPAIGN_COMPLETED, event_id=uuid.uuid4()) == []

    assert (Event.objects.count(), Delivery.objects.count(), receiver.requests) == (0, 0, [])


def test_recording_an_event_twice_stores_it_and_its_deliveries_once(receiver):
    endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    endpoint_create(url=receiver.url("/other"), events=[events.EXPORT_READY])

    first = _record(events.EXPORT_READY)
    again = _record(events.EXPORT_READY)

    assert len(first) == 2
    assert sorted(d.pk for d in again) == sorted(d.pk for d in first)
    assert (Event.objects.count(), Delivery.objects.count()) == (1, 2)


def test_results_of_an_evaluation_campaign_become_evaluation_ready_for_its_job(receiver):
    endpoint_create(url=receiver.url(), events=[events.CAMPAIGN_COMPLETED, "evaluation.ready"])
    campaign = f.campaign(name="evaluation pairs", questions=f.ALIGNMENT_SCHEMA)
    other = f.campaign(name="plain campaign", questions=f.ALIGNMENT_SCHEMA)
    job = TrainingJob.objects.create(
        recipe="finetune", base_model_version=f.model_version(), params={}, total_steps=1
    )
    evaluation = TrainingJobEvaluation.objects.create(
        job=job, status=EvaluationStatus.OPEN, campaign=campaign
    )

    [delivery] = event_record(
        event_id=EVENT_ID,
        name=events.CAMPAIGN_RESULTS_COMPUTED,
        object_type="campaign",
        object_id=campaign.pk,
        occurred_at=OCCURRED,
        data={"aggregation_run": 7},
    )
    plain = event_record(
        event_id=uuid.uuid4(),
        name=events.CAMPAIGN_RESULTS_COMPUTED,
        object_type="campaign",
        object_id=other.pk,
        occurred_at=OCCURRED,
        data={"aggregation_run": 8},
    )
    delivery_attempt(delivery_id=delivery.pk, number=1)

    assert plain == []
    [got] = receiver.requests
    assert got.json == {
        "id": str(uuid.uuid5(EVENT_ID, "evaluation.ready")),
        "type": "evaluation.ready",
        "created_at": "2025-01-31T12:00:00.123456Z",
        "object": {
            "type": "training_job",
            "id": job.pk,
            "url": f"https://stickers.example.org/api/training-jobs/{job.pk}/",
        },
        "data": {
            "evaluation": evaluation.pk,
            "campaign": campaign.pk,
            "campaign_status": campaign.status,
            "aggregation_run": 7,
        },
    }


def test_a_test_delivery_is_tried_once(receiver):
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(503)

    delivery = endpoint_test_send(endpoint=endpoint)
    delivered = delivery_attempt(delivery_id=delivery.pk, number=1)

    [got] = receiver.requests
    assert (got.json["type"], got.json["object"]) == (
        "webhook.test",
        {
            "type": "webhook_endpoint",
            "id": endpoint.pk,
            "url": f"https://stickers.example.org/api/webhooks/endpoints/{endpoint.pk}/",
        },
    )
    assert (delivered.status, delivered.attempts, delivered.last_status_code) == (
        "failed",
        1,
        503,
    )


def test_an_endpoint_is_disabled_after_failures_in_a_row_and_a_success_resets_the_count(
    receiver, settings
):
    settings.WEBHOOK_DISABLE_AFTER = 3
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    receiver.respond(500, 200, 500, 500, 500)
    [one] = _record(events.EXPORT_READY, event_id=uuid.uuid4())
    [two] = _record(events.EXPORT_READY, event_id=uuid.uuid4())
    [three] = _record(events.EXPORT_READY, event_id=uuid.uuid4())

    delivery_attempt(delivery_id=one.pk, number=1)  # 500: 1 in a row
    delivery_attempt(delivery_id=one.pk, number=2)  # 200: back to 0
    assert Endpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0
    delivery_attempt(delivery_id=two.pk, number=1)  # 500
    delivery_attempt(delivery_id=two.pk, number=2)  # 500
    delivery_attempt(delivery_id=three.pk, number=1)  # 500: the third in a row
    left = delivery_attempt(delivery_id=two.pk, number=3)  # due, but the endpoint is off

    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.consecutive_failures, endpoint.disabled_reason) == (
        False,
        3,
        "Disabled after 3 failed attempts in a row (the last: HTTP 500).",
    )
    assert endpoint.disabled_at is not None
    assert Delivery.objects.get(pk=three.pk).status == "failed"
    assert left is None
    two.refresh_from_db()
    assert (two.status, two.last_error, two.attempts) == (
        "failed",
        "The endpoint is disabled.",
        2,
    )
    assert len(receiver.requests) == 5


def test_during_a_rotation_both_secrets_sign_and_afterwards_only_the_new_one(receiver):
    endpoint, old = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    endpoint, new = endpoint_secret_rotate(endpoint=endpoint, overlap_hours=24)
    [overlapping] = _record(events.EXPORT_READY, event_id=uuid.uuid4())
    delivery_attempt(delivery_id=overlapping.pk, number=1)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    [after] = _record(events.EXPORT_READY, event_id=uuid.uuid4())
    delivery_attempt(delivery_id=after.pk, number=1)

    first, second = receiver.requests
    assert new != old and new.startswith("whsec_")
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", first.headers[signing.HEADER])
    assert (first.verifies(new), first.verifies(old)) == (True, True)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", second.headers[signing.HEADER])
    assert (second.verifies(new), second.verifies(old)) == (True, False)


def test_a_rotation_without_overlap_drops_the_old_secret_at_once(receiver):
    endpoint, old = endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    endpoint, new = endpoint_secret_rotate(endpoint=endpoint, overlap_hours=0)
    [delivery] = _record(events.EXPORT_READY)
    delivery_attempt(delivery_id=delivery.pk, number=1)

    [got] = receiver.requests
    assert (got.verifies(new), got.verifies(old)) == (True, False)
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)


def _resolver(monkeypatch, table: dict[str, str]):
    real = socket.getaddrinfo

    def lookup(host, port, *args, **kwargs):
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


def test_the_address_is_checked_again_at_send_time(receiver, settings, monkeypatch):
    """DNS rebinding: a name public at registration that points at loopback later is not
    called."""
    settings.WEBHOOK_ALLOW_PRIVATE = False
    _resolver(monkeypatch, {"hooks.example.test": "93.184.216.34"})
    endpoint_create(
        url=f"http://hooks.example.test:{receiver.port}/hook", events=[events.EXPORT_READY]
    )
    [delivery] = _record(events.EXPORT_READY)
    _resolver(monkeypatch, {"hooks.example.test": "127.0.0.1"})

    delivered = delivery_attempt(delivery_id=delivery.pk, number=1)

    assert receiver.requests == []
    assert _log(delivery) == [
        (
            1,
            None,
            "Not sent: hooks.example.test resolves to 127.0.0.1, which is a loopback address; "
            "webhooks may call only public addresses (STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows "
            "others).",
        )
    ]
    assert delivered.status == "pending"


def test_the_sender_connects_to_the_checked_address_with_the_name_as_host(receiver, monkeypatch):
    _resolver(monkeypatch, {"receiver.example.test": "127.0.0.1"})
    endpoint_create(
        url=f"http://receiver.example.test:{receiver.port}/hook", events=[events.EXPORT_READY]
    )
    [delivery] = _record(events.EXPORT_READY)

    delivery_attempt(delivery_id=delivery.pk, number=1)

    [got] = receiver.requests
    assert got.headers["Host"] == f"receiver.example.test:{receiver.port}"


def test_redelivery_sends_the_same_event_again_with_a_new_window(receiver):
    endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    [delivery] = _record(events.EXPORT_READY)
    delivery_attempt(delivery_id=delivery.pk, number=1)

    again = delivery_redeliver(delivery=delivery)
    with pytest.raises(ServiceConflict, match=f"Delivery {delivery.pk} is still pending."):
        delivery_redeliver(delivery=delivery)
    delivered = delivery_attempt(delivery_id=delivery.pk, number=2)

    first, second = receiver.requests
    assert first.body == second.body
    assert (again.status, again.finished_at) == ("pending", None)
    assert again.window_started_at > delivery.window_started_at
    assert (delivered.status, delivered.attempts) == ("succeeded", 2)
    assert _log(delivery) == [(1, 200, ""), (2, 200, "")]


def test_the_sweep_sends_again_a_delivery_whose_worker_died(receiver, settings):
    # given: attempt 1 claimed long ago and never settled (its worker was killed)
    endpoint_create(url=receiver.url(), events=[events.EXPORT_READY])
    [delivery] = _record(events.EXPORT_READY)
    long_ago = timezone.now() - timedelta(minutes=10)
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", attempts=1, sending_since=long_ago, next_attempt_at=None
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=long_ago)
    fresh = _record(events.EXPORT_READY, event_id=uuid.uuid4())[0]
    Delivery.objects.filter(pk=fresh.pk).update(
        status="sending", attempts=1, sending_since=timezone.now(), next_attempt_at=None
    )

    # when
    recovered = deliveries_recover()
    delivered = delivery_attempt(delivery_id=delivery.pk, number=2)

    # then: the stale one is sent again, the live one is left to its worker
    assert recovered == [delivery.pk]
    assert _log(delivery) == [(1, None, INTERRUPTED), (2, 200, "")]
    assert delivered.status == "succeeded"
    assert Delivery.objects.get(pk=fresh.pk).status == "sending"
    assert len(receiver.requests) == 1
