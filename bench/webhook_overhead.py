"""Webhooks: what announcing a state change adds to the request that makes it.

    python bench/webhook_overhead.py [--quick] [--iterations N]

The change is ``campaign_close`` on a running campaign (a real service: row lock, lease and item
updates, then ``stickerloop.events.publish`` after commit), timed with the webhooks listener
subscribed (the platform as it runs: one message on the ``default`` queue, real Redis) and
without any listener, interleaved, each on a fresh campaign. Nothing is sent inline either
way: an endpoint is registered (so the worker would have work), but no worker runs.

``publish_enqueue_ms_*`` times ``publish`` alone: an otherwise empty transaction that publishes
and commits, against one that only commits.

``relay_ms_*`` is the webhooks listener's own time inside those closes (building the message
and one LPUSH): what the request waits for, without the noise of the close itself. On a busy
machine (the 2-core development box under other work) the wall-clock figures grow with the wait
for a CPU after each round trip; compare them with the load average printed beside them.

Last line: {"bench": "webhook_overhead", "iterations", "close_ms_median_without",
"close_ms_median_with", "added_ms_median", "added_ms_p95", "relay_ms_median", "relay_ms_p95",
"publish_enqueue_ms_median", "publish_enqueue_ms_p95", "queued_messages", "load_average"}.
Target: added_ms_median <= 2 (relay_ms_median, the listener alone, far below it).
"""

import argparse
import os
import statistics
import time

from _common import emit, setup_django


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, for CI")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    iterations = args.iterations or (200 if args.quick else 2000)

    env = setup_django("bench_webhooks")
    import redis
    from django.db import transaction

    from annotation.models import Campaign
    from annotation.services.campaigns import campaign_close
    from stickerloop import events
    from webhooks.models import Endpoint
    from webhooks.relay import event_relay

    Endpoint.objects.create(
        url="https://93.184.216.34/hook", events=["campaign.completed"], secret="whsec_bench"
    )
    campaigns = Campaign.objects.bulk_create(
        Campaign(name=f"bench {i}", kind="single", status="running") for i in range(2 * iterations)
    )
    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])

    def close(campaign) -> float:
        started = time.perf_counter()
        campaign_close(campaign=campaign)
        return time.perf_counter() - started

    def bare() -> float:
        started = time.perf_counter()
        with transaction.atomic():
            pass
        return time.perf_counter() - started

    def published() -> float:
        started = time.perf_counter()
        with transaction.atomic():
            events.publish(events.EXPORT_READY, object_type="dataset_export", object_id=1)
        return time.perf_counter() - started

    # Warm up both paths: the broker connection, the first queries.
    events.subscribe(event_relay)
    for _ in range(20):
        published()
        bare()
    broker.flushdb()

    # Interleaved, the order flipped every other round (ABBA), so that drift and whatever one
    # call leaves behind for the next weigh on both sides alike.
    # The listener's own time inside each close: what the request waits for the enqueue.
    relay_seconds = []

    def timed_relay(event) -> None:
        started = time.perf_counter()
        event_relay(event)
        relay_seconds.append(time.perf_counter() - started)

    events.unsubscribe(event_relay)
    without, with_relay = [], []
    for i in range(iterations):
        for relay in (False, True) if i % 2 == 0 else (True, False):
            if relay:
                events.subscribe(timed_relay)
                with_relay.append(close(campaigns[2 * i + 1]))
            else:
                events.unsubscribe(timed_relay)
                without.append(close(campaigns[2 * i]))
    events.unsubscribe(timed_relay)
    events.subscribe(event_relay)
    empty, publishing = [], []
    for i in range(iterations):
        for publish in (False, True) if i % 2 == 0 else (True, False):
            (publishing if publish else empty).append(published() if publish else bare())
    queued = broker.llen("default")
    broker.flushdb()

    median_without, median_with = statistics.median(without), statistics.median(with_relay)
    emit(
        {
            "bench": "webhook_overhead",
            "iterations": iterations,
            "close_ms_median_without": _ms(median_without),
            "close_ms_median_with": _ms(median_with),
            "added_ms_median": _ms(median_with - median_without),
            "added_ms_p95": _ms(_p95(with_relay) - _p95(without)),
            "relay_ms_median": _ms(statistics.median(relay_seconds)),
            "relay_ms_p95": _ms(_p95(relay_seconds)),
            "publish_enqueue_ms_median": _ms(
                statistics.median(publishing) - statistics.median(empty)
            ),
            "publish_enqueue_ms_p95": _ms(_p95(publishing) - _p95(empty)),
            "queued_messages": queued,
            "load_average": round(os.getloadavg()[0], 2),
        }
    )


if __name__ == "__main__":
    main()
