"""The scrape: this web server's request figures and the figures read from their sources."""

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from stickerloop.metrics import queues, state, tasks

logger = logging.getLogger(__name__)


class _ThisProcess:
    """This process's own metrics (no multiprocess folder: runserver, the tests)."""

    def collect(self):
        yield from REGISTRY.collect()


class _Sources:
    """The figures read at scrape time. A source that cannot be read (the broker down) is
    reported as down and its figures left out; the others are still served."""

    SOURCES = (
        ("broker", queues.families),
        ("task_store", tasks.families),
        ("database", state.families),
    )

    def collect(self):
        up = GaugeMetricFamily(
            "stickerloop_metrics_source_up",
            "Whether the last scrape could read a source of figures (1) or not (0).",
            labels=["source"],
        )
        for source, families in self.SOURCES:
            try:
                found = families()
            except Exception as exc:
                logger.warning("metrics: %s unreadable: %s", source, exc)
                up.add_metric([source], 0)
                continue
            if found is not None:
                up.add_metric([source], 1)
                yield from found
        yield up


def scrape(accept: str | None) -> tuple[bytes, str]:
    """Every metric, encoded as the scraper asked (``Accept``): the body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_Sources())
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
