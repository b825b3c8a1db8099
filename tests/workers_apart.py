"""Keeps pytest-xdist's workers out of each other's way (``make test`` runs two of them).

Loaded with ``-p`` (pyproject's addopts) so that it runs before pytest-django configures
Django: each worker gets its own test database from pytest-django (``test_<name>_gw<n>``), and
here its own Redis database, as the broker of the Celery workers its tests start and as the
cache (login throttling counts and locks by address, and every test logs in from 127.0.0.1).
Worker ``gw<n>`` uses Redis database ``(d + n) % 16``, where ``d`` is the one configured.
"""

import os
from urllib.parse import urlparse, urlunparse

import pytest

REDIS_DATABASES = 16
URL_VARIABLES = ("CELERY_BROKER_URL", "REDIS_URL")


def redis_url_for_worker(url: str, index: int) -> str:
    """``url`` with its Redis database moved ``index`` places on; other URLs unchanged."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        return url
    database = int(parsed.path.lstrip("/") or 0)
    return urlunparse(parsed._replace(path=f"/{(database + index) % REDIS_DATABASES}"))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", …: set only in xdist workers
    if not worker:
        return
    index = int(worker.removeprefix("gw"))
    for variable in URL_VARIABLES:
        if os.environ.get(variable):
            os.environ[variable] = redis_url_for_worker(os.environ[variable], index)
