"""Shared fixtures: real PostgreSQL, real Redis, the tiny diffusers models, users per role."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from bench import _common as bench_common
from tests import factories

# `make test`'s second pass: the tests that use the database again, on SQLite, the database
# `make run` uses; not those of PostgreSQL's own behaviour, nor those that start processes or a
# browser. A test without the database ran the same code in the first pass.
ON_SQLITE = os.environ.get("STICKERLOOP_TEST_ON_SQLITE") == "1"
LEFT_OUT_ON_SQLITE = ("postgresql", "e2e", "browser", "load")
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


def pytest_sessionstart(session):
    engine = django_settings.DATABASES["default"]["ENGINE"]
    if ON_SQLITE and "sqlite" not in engine:
        pytest.exit(
            f"STICKERLOOP_TEST_ON_SQLITE=1 needs a sqlite:// DATABASE_URL (got {engine}).",
            returncode=2,
        )
    if not ON_SQLITE and "postgresql" not in engine:
        pytest.exit(
            "The suite runs against PostgreSQL: use `make test`, or set DATABASE_URL to a "
            f"postgres:// URL (got {engine}).",
            returncode=2,
        )


def pytest_collection_modifyitems(config, items):
    if not ON_SQLITE:
        return
    kept, left_out = [], []
    for item in items:
        marked = any(item.get_closest_marker(name) for name in LEFT_OUT_ON_SQLITE)
        uses_database = item.get_closest_marker("django_db") or DATABASE_FIXTURES.intersection(
            getattr(item, "fixturenames", ())
        )
        (kept if uses_database and not marked else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True)
def _cold_caches():
    """Each test starts with the per-process caches keyed by row id empty. SQLite hands a rolled
    back test's ids out again (PostgreSQL's sequences never do), so without this a test on SQLite
    could read the previous test's campaign settings or export facts."""
    from annotation import selectors
    from training_bridge.exports import formats

    selectors._configs.clear()
    formats._last_read.clear()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Users are made by the dozen; PBKDF2 spends about 0.25 s on each on the 2-core machine.
    Tests only: production keeps Django's default hashers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's model code on one torch thread, restoring the count afterwards.

    Measured on the 2-core machine while other processes were busy: batch-8 sticker
    generation took 6.6-8.5 s with torch's default 2 threads (spin-waiting threads fight for
    the cores, PostgreSQL and the workers) but 0.42 s with 1 thread; when idle, 1 thread costs
    0.32 s against 0.23 s. Training's first steps took ten times longer with two.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_specs(tmp_path_factory) -> list[dict]:
    """The default tiny models, built offline once per test session for every test that runs
    them: the pipeline tests, the training recipes, the workers of the end-to-end tests."""
    from generation.pipelines import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """The tiny random text-generation model (GPT-2 shape, word-level tokenizer) the
    text-generation prompt enhancer is tested with, built offline once per session."""
    from generation.pipelines import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("text-models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_models_root(tiny_model_specs) -> Path:
    return Path(tiny_model_specs[0]["uri"]).parent


@pytest.fixture(scope="session")
def tiny_model_token_limits(tiny_model_specs) -> dict[str, int]:
    """Each tiny model's prompt token limit, read from its tokenizer once per session, as
    ``model_version_register`` reads it on every registration (about 0.5 s a model)."""
    from generation.pipelines import model_prompt_token_limit

    return {spec["name"]: model_prompt_token_limit(spec["uri"]) for spec in tiny_model_specs}


@pytest.fixture
def models(db, tiny_model_specs, tiny_model_token_limits):
    """The tiny models as model versions, by name, pointing at the session's folders.

    Written as rows rather than through ``model_version_register``: that service reloads every
    folder's tokenizer to check it (about 2 s per test for the four), and the session fixtures
    have built and read them already. Registration itself is tested in tests/generation.
    """
    from generation.models import ModelVersion

    return {
        spec["name"]: ModelVersion.objects.create(
            name=spec["name"],
            kind=spec["kind"],
            role=spec["role"],
            uri=spec["uri"],
            default_params=spec["default_params"],
            max_prompt_tokens=tiny_model_token_limits[spec["name"]],
        )
        for spec in tiny_model_specs
    }


@pytest.fixture
def rater(db):
    return factories.user("rater", ["rater"])


@pytest.fixture
def curator(db):
    return factories.user("curator", ["curator"])


@pytest.fixture
def engineer(db):
    return factories.user("engineer", ["ml_engineer"])


@pytest.fixture
def admin_user(db):
    return factories.user("boss", ["admin"])


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api():
    return client_for


def logged_in(user) -> Client:
    """A browser session of ``user`` on the server-rendered pages."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def site():
    return logged_in


def get_ok(client, *urls: str) -> None:
    """GET each of ``urls``, each answering 200."""
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url


class Worker:
    """A real Celery worker in a subprocess, on the test database and the test broker."""

    def __init__(self, *, queues: str, media_root: Path, log_path: Path, extra_env: dict):
        db = connection.settings_dict
        url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "STICKERLOOP_MEDIA_ROOT": str(media_root),
            "DATABASE_CONN_MAX_AGE": "0",
            **extra_env,
        }
        self.log_path = log_path
        self.proc = bench_common.start_worker(
            queues,
            env,
            log_path,
            "-n",
            f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            loglevel="INFO",
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to ack, requeue or clean up."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Site:
    """The site under gunicorn in a subprocess, as production runs it, on ``port``."""

    def __init__(self, *, env: dict, log_path: Path, workers: int, log_level: str):
        self.port = bench_common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "gunicorn", "stickerloop.wsgi:application"),
                *("--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)),
                *("--log-level", log_level),
            ],
            cwd=bench_common.ROOT,
            env={**os.environ, **env},
            stdout=open(log_path, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self, *, timeout: float = 90) -> None:
        """Until ``/healthz`` answers (each worker imports the project first: seconds)."""
        import requests

        def up() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                # The first request waits for the worker to import the project.
                return requests.get(f"{self.url}/healthz", timeout=60).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=timeout, message=f"gunicorn up\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture
def serve(tmp_path):
    """Start the site under gunicorn with ``env`` over this process's environment; it is up
    (``/healthz`` answers) when this returns, and stopped at the end of the test."""
    sites: list[Site] = []

    def start(*, workers: int = 1, log_level: str = "warning", **env) -> Site:
        site = Site(
            env={k: str(v) for k, v in env.items()},
            log_path=tmp_path / f"gunicorn-{len(sites)}.log",
            workers=workers,
            log_level=log_level,
        )
        sites.append(site)
        site.wait_up()
        return site

    yield start
    for site in sites:
        site.stop()


class MotoS3:
    """moto's S3 server (``moto[server]``) in a subprocess on a free 127.0.0.1 port: a real
    S3-compatible endpoint over HTTP. ``no_auth_actions``: moto checks credentials (against
    the users made through its IAM API) after that many requests; None, it takes any."""

    REGION = "us-east-1"

    def __init__(self, *, log_path: Path, no_auth_actions: int | None = None):
        self.port = bench_common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ)
        if no_auth_actions is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(no_auth_actions)
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("moto_server")),
                *("-H", "127.0.0.1", "-p", str(self.port)),
            ],
            env=env,
            stdout=open(log_path, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._up, timeout=30, message=f"moto_server up\n{self.log()}")

    def _up(self) -> bool:
        import requests

        assert self.proc.poll() is None, self.log()
        try:
            return requests.get(f"{self.url}/moto-api/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, service: str = "s3", *, key: str = "test", secret: str = "test"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def env(self, bucket: str, *, key: str = "test", secret: str = "test") -> dict[str, str]:
        """The environment that points a process's media at ``bucket`` on this server."""
        return {
            "STICKERLOOP_S3_BUCKET": bucket,
            "STICKERLOOP_S3_ENDPOINT_URL": self.url,
            "STICKERLOOP_S3_ACCESS_KEY": key,
            "STICKERLOOP_S3_SECRET_KEY": secret,
            "AWS_DEFAULT_REGION": self.REGION,
        }

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """One moto S3 server for the session; each test makes its own bucket (``s3_bucket``)."""
    server = MotoS3(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server, settings) -> str:
    """A new, empty bucket on the moto server, configured as this test's media storage exactly
    as ``STICKERLOOP_S3_*`` configure it (stickerloop.settings)."""
    import uuid

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    settings.S3_BUCKET = bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **django_settings.S3_STORAGE_OPTIONS,
                "bucket_name": bucket,
                "endpoint_url": moto_server.url,
                "access_key": "test",
                "secret_key": "test",
                "region_name": MotoS3.REGION,
            },
        },
    }
    return bucket


@pytest.fixture
def broker_clean():
    """Empty the test broker so no message from an earlier test reaches this test's worker."""
    import redis

    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def start_worker(transactional_db, broker_clean, settings, tmp_path):
    """Start real workers; every one is stopped at the end of the test."""
    workers: list[Worker] = []

    def start(queues: str = "default,gpu", **extra_env) -> Worker:
        worker = Worker(
            queues=queues,
            media_root=Path(settings.MEDIA_ROOT),
            log_path=tmp_path / f"worker-{len(workers)}.log",
            extra_env={k: str(v) for k, v in extra_env.items()},
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message}")


def run_at_once(calls: list, *, timeout: float) -> tuple[list, list[Exception]]:
    """Run each of ``calls`` in its own thread, released together by a barrier, each closing its
    database connection when done. Returns (the calls' results, the exceptions they raised), in
    the order they finished; a thread still running after ``timeout`` seconds is left behind."""
    barrier = threading.Barrier(len(calls))
    results, errors = [], []

    def run(call):
        try:
            barrier.wait(timeout=timeout)
            results.append(call())
        except Exception as exc:  # the caller asserts on them
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results, errors


@pytest.fixture
def flat_queries(django_assert_num_queries):
    """Pin a read's queries: exactly ``count`` with 2 rows, and still ``count`` with 5.

    ``grow(n)`` adds ``n`` rows of what the read lists; ``read()`` does the read. A count that
    grows with the rows is an N+1: fix it in the selector, not here.
    """

    def check(*, grow, read, count: int) -> None:
        grow(2)
        with django_assert_num_queries(count):
            read()
        grow(3)
        with django_assert_num_queries(count):
            read()

    return check
