"""Webhooks end to end: a real service announces, a real Celery worker (subprocess, Redis,
PostgreSQL) records and sends, a real HTTP receiver on 127.0.0.1 answers."""

import pytest

from annotation.services.campaigns import campaign_close
from tests import factories as f
from tests.conftest import wait_for
from training_bridge.versions import dataset_version_publish
from webhooks.models import Delivery, DeliveryAttempt, Event
from webhooks.services.deliveries import INTERRUPTED, deliveries_recover
from webhooks.services.endpoints import endpoint_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "STICKERLOOP_WEBHOOK_ALLOW_PRIVATE": 1,
    "STICKERLOOP_WEBHOOK_RETRY_FIRST_SECONDS": 1,
    "STICKERLOOP_SITE_URL": "https://stickers.example.org",
}


def _log(delivery) -> list[tuple]:
    return [
        (a.number, a.status_code, a.error)
        for a in DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    ]


def _finished(delivery, worker):
    def done():
        delivery.refresh_from_db()
        return delivery.is_finished

    wait_for(done, timeout=60, interval=0.3, message=worker.log()[-3000:])
    return delivery


def test_the_worker_retries_after_500_and_a_timeout_and_skips_unsubscribed_events(
    start_worker, receiver, curator
):
    # given: an endpoint for campaign.completed only, answering 500, then too late, then 200
    _, secret = endpoint_create(url=receiver.url(), events=["campaign.completed"])
    receiver.respond(500, ("sleep", 2.0, 200), 200)
    worker = start_worker("default", STICKERLOOP_WEBHOOK_TIMEOUT_SECONDS=1, **WORKER_ENV)
    version = f.dataset_version(
        {"sticker-base": f.model_version("sticker-base")}, purpose="alignment", status="draft"
    )
    campaign = f.running_campaign(raters=[], n_items=1)

    # when: an event nobody subscribed to, then one the endpoint wants
    dataset_version_publish(version=version, published_by=curator)
    campaign_close(campaign=campaign)

    # then
    made = wait_for(Delivery.objects.first, timeout=60, message=worker.log()[-3000:])
    delivery = _finished(made, worker)
    [event] = Event.objects.all()
    first, second, third = receiver.wait_for(3, timeout=10)
    assert (event.type, event.object_id) == ("campaign.completed", campaign.pk)
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert _log(delivery) == [(1, 500, ""), (2, None, "No answer within 1 s."), (3, 200, "")]
    # the second waited for 1 s after the first; the third for the 1 s timeout, then 2 s
    assert second.at - first.at >= 1.0
    assert third.at - second.at >= 3.0
    assert first.body == second.body == third.body
    assert first.json["id"] == str(event.event_id)
    assert first.json["object"]["url"] == (
        f"https://stickers.example.org/api/campaigns/{campaign.pk}/"
    )
    assert all(r.verifies(secret) for r in (first, second, third))
    assert len(receiver.requests) == 3


def test_a_worker_killed_mid_delivery_makes_the_receiver_see_the_event_twice(
    start_worker, receiver, settings
):
    # given: the receiver holds the first POST open; the worker would wait 30 s for it
    settings.WEBHOOK_TIMEOUT_SECONDS = 1  # this process runs the sweep: stale after 2 × 1 + 1 s
    settings.SWEEP_STALE_SECONDS = 1
    _, secret = endpoint_create(url=receiver.url(), events=["campaign.completed"])
    receiver.respond("hang")
    first_worker = start_worker("default", STICKERLOOP_WEBHOOK_TIMEOUT_SECONDS=30, **WORKER_ENV)
    campaign = f.running_campaign(raters=[], n_items=1)
    campaign_close(campaign=campaign)
    receiver.wait_for(1, timeout=60)

    # when: the worker dies mid-delivery, another one starts, and beat's sweep runs
    first_worker.kill()
    receiver.release()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sending", 1)
    second_worker = start_worker("default", STICKERLOOP_WEBHOOK_TIMEOUT_SECONDS=30, **WORKER_ENV)

    def delivered():
        deliveries_recover()
        delivery.refresh_from_db()
        return delivery.status == "succeeded"

    wait_for(delivered, timeout=60, interval=0.5, message=second_worker.log()[-3000:])

    # then: the same event (id and bytes) arrived twice, both signed
    once, again = receiver.requests
    assert once.json["id"] == again.json["id"] == str(Event.objects.get().event_id)
    assert once.body == again.body
    assert once.verifies(secret) and again.verifies(secret)
    assert [once.headers["Stickerloop-Delivery"], again.headers["Stickerloop-Delivery"]] == [
        f"{delivery.pk}.1",
        f"{delivery.pk}.2",
    ]
    assert _log(delivery) == [(1, None, INTERRUPTED), (2, 200, "")]
