"""/healthz and /readyz: liveness touches nothing; readiness names a stopped or hung part fast.

The database and the broker are reached through a relay (``Gate``) in front of the real
PostgreSQL and Redis, which the test closes (a stopped server: connections refused) or silences
(a hung one: connections accepted, never answered), while the site runs under gunicorn.
"""

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from bench._common import free_port
from stickerloop import health

ALL_OK = {"database": "ok", "broker": "ok", "storage": "ok"}
# Orchestrators are promised an answer within 2 s of a part stopping; the bound leaves room for
# a loaded 2-core machine.
BOUND_SECONDS = 2.5


class Gate:
    """A TCP relay on 127.0.0.1 to ``upstream`` (or to nothing) that a test can close, silence
    and open again. Closed, the port refuses connections; silent, it accepts them and answers
    nothing; open, it relays bytes both ways. Each change drops the connections it holds."""

    def __init__(self, upstream: tuple[str, int] | None):
        self.upstream = upstream
        self.port = 0
        self.mode = "closed"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.open()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._held.append(client)
            if self.mode == "open" and self.upstream is not None:
                server = socket.create_connection(self.upstream)
                with self._lock:
                    self._held.append(server)
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _drop_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _set(self, mode: str) -> None:
        self._drop_held()
        if mode == "closed" and self._listener is not None:
            self._listener, listener = None, self._listener
            listener.close()
        elif mode != "closed" and self._listener is None:
            self._listen()
        self.mode = mode

    def open(self) -> None:
        self._set("open")

    def silence(self) -> None:
        self._set("silent")

    def close(self) -> None:
        self._set("closed")


def _readyz(url: str) -> tuple[int, dict]:
    response = requests.get(f"{url}/readyz", timeout=10)
    return response.status_code, response.json()


def _until(url: str, status: int, *, timeout: float = 10) -> tuple[dict, float]:
    """Ask /readyz until it answers ``status``; the answer and the seconds it took."""
    started = time.monotonic()
    while True:
        got, body = _readyz(url)
        if got == status:
            return body, time.monotonic() - started
        assert time.monotonic() - started < timeout, (got, body)
        time.sleep(0.05)


def _failing(part: str) -> dict:
    return {"status": "unavailable", "checks": {**ALL_OK, part: "unavailable"}, "failing": [part]}


@pytest.fixture
def gated_site(serve, tmp_path):
    """The site under gunicorn, its database and broker behind gates."""
    db = settings.DATABASES["default"]
    broker = urlsplit(settings.CELERY_BROKER_URL)
    db_gate = Gate((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    broker_gate = Gate((broker.hostname, broker.port or 6379))
    media = tmp_path / "site-media"
    media.mkdir()
    site = serve(
        DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{db_gate.port}/{db['NAME']}",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{broker_gate.port}{broker.path}",
        STICKERLOOP_MEDIA_ROOT=media,
    )
    yield site, {"database": db_gate, "broker": broker_gate}
    for gate in (db_gate, broker_gate):
        gate.close()


@pytest.mark.postgresql
@pytest.mark.parametrize("part", ["database", "broker"])
def test_readyz_names_a_stopped_or_hung_part_within_two_seconds(gated_site, part):
    site, gates = gated_site
    assert _readyz(site.url) == (200, {"status": "ready", "checks": ALL_OK})
    for stop in (gates[part].close, gates[part].silence):
        # when: the part stops (refuses connections), or hangs (accepts and never answers)
        stop()
        body, seconds = _until(site.url, 503)
        # then: 503 naming it, within the bound; liveness is untouched
        assert body == _failing(part), stop
        assert seconds < BOUND_SECONDS, (stop, seconds)
        assert requests.get(f"{site.url}/healthz", timeout=5).json() == {"status": "ok"}
        # and ready again once it is back
        gates[part].open()
        assert _until(site.url, 200)[0] == {"status": "ready", "checks": ALL_OK}


def test_healthz_answers_without_any_part(serve, tmp_path):
    site = serve(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
        STICKERLOOP_MEDIA_ROOT=tmp_path / "missing",
    )
    response = requests.get(f"{site.url}/healthz", timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    status, body = _readyz(site.url)
    assert (status, body) == (
        503,
        {
            "status": "unavailable",
            "checks": {
                "database": "unavailable",
                "broker": "unavailable",
                "storage": "unavailable",
            },
            "failing": ["database", "broker", "storage"],
        },
    )
    # The reasons, which name hosts and folders, are in the log, not the answer.
    assert "readyz: storage: the folder" in site.log()
    assert "missing" not in str(body)


# The storage, in-process: the settings are read at each check ---------------------------------


@pytest.fixture
def fresh_readiness():
    """Wait out the reuse window, so that this test's request checks anew."""
    time.sleep(health.READY_REUSE_SECONDS)


def _in_process(client) -> tuple[dict, float]:
    started = time.monotonic()
    response = client.get("/readyz")
    return response.status_code, response.json(), time.monotonic() - started


@pytest.mark.django_db
def test_readyz_answers_ready_with_the_media_folder(client, settings, fresh_readiness):
    settings.MEDIA_ROOT.mkdir(parents=True)
    status, body, _ = _in_process(client)
    assert (status, body) == (200, {"status": "ready", "checks": ALL_OK})
    # The probe file is gone again.
    assert list(settings.MEDIA_ROOT.iterdir()) == []


@pytest.mark.django_db
def test_readyz_names_the_storage_when_the_media_folder_is_missing(
    client, settings, fresh_readiness
):
    status, body, _ = _in_process(client)
    assert (status, body) == (503, _failing("storage"))


def _s3_storages(endpoint: str) -> dict:
    return {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "stickerloop",
                "endpoint_url": endpoint,
                "access_key": "key",
                "secret_key": "secret",
            },
        },
    }


@pytest.mark.django_db
@pytest.mark.parametrize("silent", [False, True], ids=["closed", "silent"])
def test_readyz_names_the_storage_when_the_bucket_does_not_answer(
    client, settings, fresh_readiness, silent
):
    gate = Gate(None)
    if silent:
        gate.silence()
    else:
        gate.close()
    settings.STORAGES = _s3_storages(f"http://127.0.0.1:{gate.port}")
    try:
        status, body, seconds = _in_process(client)
    finally:
        gate.close()
    assert (status, body) == (503, _failing("storage"))
    assert seconds < BOUND_SECONDS
