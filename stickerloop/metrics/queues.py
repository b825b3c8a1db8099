"""How many messages wait in each Celery queue, read from the broker at scrape time."""

from pathlib import Path

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from stickerloop.health import redis_client

TIMEOUT_SECONDS = 1.0
# kombu's Redis transport keeps a queue's messages of priority 0 in the list named after the
# queue, and those of each higher priority step in "<queue>\x06\x16<step>".
REDIS_PRIORITY_STEPS = (3, 6, 9)
REDIS_PRIORITY_SEPARATOR = "\x06\x16"


def queue_names() -> list[str]:
    """The queues tasks are routed to: the default one and every one named in the routes."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route}
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *routed})


def _redis_lengths(url: str, queues: list[str]) -> dict[str, int]:
    client = redis_client(url, timeout=TIMEOUT_SECONDS)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for step in REDIS_PRIORITY_STEPS:
                pipe.llen(f"{queue}{REDIS_PRIORITY_SEPARATOR}{step}")
        lengths = iter(pipe.execute())
    finally:
        client.close()
    per_queue = 1 + len(REDIS_PRIORITY_STEPS)
    return {queue: sum(next(lengths) for _ in range(per_queue)) for queue in queues}


def _folder_lengths(folder: Path, queues: list[str]) -> dict[str, int]:
    """kombu's filesystem transport writes a message as ``<time>_<uuid>.<queue>.msg``."""
    counts = dict.fromkeys(queues, 0)
    for entry in folder.iterdir():
        name, _, rest = entry.name.partition(".")
        queue = rest.removesuffix(".msg")
        if queue in counts and rest.endswith(".msg") and name:
            counts[queue] += 1
    return counts


def families() -> list | None:
    """The queue lengths, or None for a broker whose queues are not read here."""
    url = settings.CELERY_BROKER_URL
    queues = queue_names()
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        lengths = _redis_lengths(url, queues)
    elif scheme == "filesystem":
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        lengths = _folder_lengths(folder, queues)
    else:
        return None
    gauge = GaugeMetricFamily(
        "stickerloop_celery_queue_length",
        "Messages waiting in a Celery queue (not yet taken by a worker), read from the broker.",
        labels=["queue"],
    )
    for queue in queues:
        gauge.add_metric([queue], lengths[queue])
    return [gauge]
