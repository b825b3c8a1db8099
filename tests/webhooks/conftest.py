"""A real HTTP receiver on 127.0.0.1 (``http.server`` in a thread), scripted per request, and
endpoints pointed at it. Private addresses are allowed here (the receiver is on loopback); the
tests of the address rules turn the setting off again."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webhooks import signing


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def verifies(self, secret: str) -> bool:
        return signing.verify(self.headers[signing.HEADER], self.body, secret, now=time.time())


class Receiver:
    """Answers each POST as the next step of its script says, then 200 when the script is done.

    A step is an HTTP status (answered at once), ``("sleep", seconds, status)`` (answered late:
    past the sender's timeout, the sender has given up), or ``"hang"`` (held until ``release()``,
    for killing the worker mid-delivery). Every request is recorded before it is answered.
    """

    def __init__(self):
        self.requests: list[Received] = []
        self.script: list = []
        self.arrived = threading.Condition()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.time())
                    )
                    step = receiver.script.pop(0) if receiver.script else 200
                    receiver.arrived.notify_all()
                if step == "hang":
                    receiver.released.wait(120)
                    step = 200
                elif isinstance(step, tuple):
                    time.sleep(step[1])
                    step = step[2]
                try:
                    reply = f'{{"got": {len(receiver.requests)}}}'.encode()
                    self.send_response(step)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the sender gave up (timeout) or was killed

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def respond(self, *steps) -> None:
        self.script.extend(steps)

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
        assert ok, f"the receiver got {len(self.requests)} requests, not {count}"
        return self.requests

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_RETRY_FIRST_SECONDS = 1
    settings.WEBHOOK_RETRY_HOURS = 24
    settings.WEBHOOK_DISABLE_AFTER = 15
    settings.SITE_URL = "https://stickers.example.org"
    return settings
