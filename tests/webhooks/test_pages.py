"""The webhook pages: register (the secret shown once), the list with the last deliveries at a
glance, an endpoint's page with its actions and the disabled notice, a delivery's attempts."""

import re
import uuid
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from stickerloop import events
from tests.conftest import get_ok
from webhooks.models import Delivery, Endpoint
from webhooks.services.deliveries import delivery_attempt
from webhooks.services.endpoints import endpoint_create
from webhooks.services.events import event_record

pytestmark = pytest.mark.django_db


def _deliver(receiver, *steps) -> Delivery:
    receiver.respond(*steps)
    [delivery] = event_record(
        event_id=uuid.uuid4(),
        name=events.BATCH_FINISHED,
        object_type="generation_batch",
        object_id=3,
        occurred_at=datetime(2025, 2, 1, tzinfo=UTC),
        data={"status": "succeeded"},
    )
    delivery_attempt(delivery_id=delivery.pk, number=1)
    return delivery


def test_registering_on_the_page_shows_the_secret_once(site, curator, receiver):
    browser = site(curator)

    answer = browser.post(
        reverse("webhook-endpoint-create"),
        {
            "url": receiver.url(),
            "description": "chat",
            "events": ["batch.finished", "rater.paused"],
        },
    )

    endpoint = Endpoint.objects.get()
    page = answer.content.decode()
    assert answer.status_code == 200
    assert f'<p class="secret" id="secret">{endpoint.secret}</p>' in page
    assert (endpoint.events, endpoint.description, endpoint.created_by) == (
        ["batch.finished", "rater.paused"],
        "chat",
        curator,
    )
    for url in (
        reverse("webhook-endpoint-list"),
        reverse("webhook-endpoint-detail", kwargs={"pk": endpoint.pk}),
    ):
        shown = browser.get(url)
        assert shown.status_code == 200
        assert endpoint.secret not in shown.content.decode()


def test_the_form_refuses_bad_input_naming_the_field(site, curator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    answer = site(curator).post(
        reverse("webhook-endpoint-create"),
        {"url": "http://127.0.0.1:9/hook", "events": ["batch.finished"]},
    )

    assert answer.status_code == 400
    assert (
        "<li><strong>url</strong>: 127.0.0.1 is a loopback address; webhooks may call only "
        "public addresses (STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows others).</li>"
    ) in answer.content.decode()
    assert Endpoint.objects.count() == 0


def test_the_list_shows_the_last_deliveries_at_a_glance(site, engineer, receiver):
    endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED])
    ok = _deliver(receiver, 200)
    failing = _deliver(receiver, 500)

    page = site(engineer).get(reverse("webhook-endpoint-list")).content.decode()

    chips = re.findall(
        r'<a class="chip (\w+)" href="/webhooks/deliveries/(\d+)/"[^>]*>([^<]*)</a>', page
    )
    assert chips == [("pending", str(failing.pk), "500"), ("succeeded", str(ok.pk), "200")]


def test_an_endpoint_disabled_after_failures_shows_a_notice(site, curator, receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER = 2
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED])
    _deliver(receiver, 500)
    _deliver(receiver, 500)
    browser = site(curator)

    page = browser.get(reverse("webhook-endpoint-detail", kwargs={"pk": endpoint.pk}))
    enabled = browser.post(
        reverse("webhook-endpoint-action", kwargs={"pk": endpoint.pk, "action": "enable"})
    )
    after = browser.get(reverse("webhook-endpoint-detail", kwargs={"pk": endpoint.pk}))

    text = re.sub(r"\s+", " ", page.content.decode())
    assert (
        '<div class="notice" id="disabled-notice"><strong>This endpoint is disabled</strong>'
        in text
    )
    assert "Disabled after 2 failed attempts in a row (the last: HTTP 500)." in text
    assert enabled.status_code == 302
    assert "disabled-notice" not in after.content.decode()
    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.consecutive_failures) == (True, 0)


def test_page_actions_test_rotate_and_redeliver(site, curator, receiver):
    endpoint, secret = endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED])
    delivery = _deliver(receiver, 200)
    browser = site(curator)
    action = lambda name: reverse(  # noqa: E731
        "webhook-endpoint-action", kwargs={"pk": endpoint.pk, "action": name}
    )

    tested = browser.post(action("test"))
    rotated = browser.post(action("rotate"), {"overlap_hours": "1"})
    redelivered = browser.post(reverse("webhook-delivery-redeliver", kwargs={"pk": delivery.pk}))
    detail = browser.get(reverse("webhook-delivery-detail", kwargs={"pk": delivery.pk}))
    unknown = browser.post(action("explode"))

    endpoint.refresh_from_db()
    assert tested.status_code == 302
    assert Delivery.objects.filter(endpoint=endpoint, event__type="webhook.test").count() == 1
    assert rotated.status_code == 200
    assert endpoint.secret != secret and endpoint.previous_secret == secret
    assert f'<p class="secret" id="secret">{endpoint.secret}</p>' in rotated.content.decode()
    assert redelivered.status_code == 302
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"
    body = detail.content.decode()
    assert "HTTP 200" in body and "&quot;type&quot;: &quot;batch.finished&quot;" in body
    assert unknown.status_code == 302


def test_raters_get_403_on_every_page(site, rater, receiver):
    endpoint, _ = endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED])
    delivery = _deliver(receiver, 200)
    browser = site(rater)

    answers = [
        browser.get(reverse("webhook-endpoint-list")).status_code,
        browser.get(reverse("webhook-endpoint-create")).status_code,
        browser.get(reverse("webhook-endpoint-detail", kwargs={"pk": endpoint.pk})).status_code,
        browser.post(
            reverse("webhook-endpoint-action", kwargs={"pk": endpoint.pk, "action": "delete"})
        ).status_code,
        browser.get(reverse("webhook-delivery-detail", kwargs={"pk": delivery.pk})).status_code,
        browser.post(reverse("webhook-delivery-redeliver", kwargs={"pk": delivery.pk})).status_code,
    ]

    assert answers == [403] * 6
    assert Endpoint.objects.count() == 1


@pytest.mark.parametrize("hours", ["-3", "two", "169"])
def test_a_bad_overlap_on_the_page_is_400_and_keeps_the_secret(site, curator, receiver, hours):
    endpoint, secret = endpoint_create(url=receiver.url(), events=[events.BATCH_FINISHED])

    answer = site(curator).post(
        reverse("webhook-endpoint-action", kwargs={"pk": endpoint.pk, "action": "rotate"}),
        {"overlap_hours": hours},
    )

    assert answer.status_code == 400
    assert (
        "<li><strong>overlap_hours</strong>: Must be an integer from 0 to 168.</li>"
        in answer.content.decode()
    )
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (secret, "")


def test_the_list_queries_do_not_grow(site, curator, flat_queries):
    made = iter(range(100))

    def grow(n):
        for _ in range(n):
            Endpoint.objects.create(
                url=f"https://hooks.example/{next(made)}",
                events=[events.BATCH_FINISHED],
                secret="whsec_x",
            )

    browser = site(curator)
    # session, user, roles, the pager's count, the page of endpoints and their last deliveries
    flat_queries(grow=grow, read=lambda: get_ok(browser, "/webhooks/"), count=6)
