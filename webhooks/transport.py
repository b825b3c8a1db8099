"""One POST to a checked target: connect to the addresses ``addresses.check_url`` returned, never
to a fresh lookup of the name, and report what came back. Django-free.

The name still goes in the Host header and, for https, in the TLS server name and certificate
check, so virtual hosts and certificates work as with any client. Redirects are not followed
(a 3xx is a failed attempt): a redirect could lead to an address that was never checked.
"""

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from webhooks.addresses import Target

EXCERPT_CHARS = 1000
USER_AGENT = "Stickerloop-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer (timeout, refused, TLS failure)
    latency_ms: float
    excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, address: str, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, address: str, target: Target, timeout: float):
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def excerpt(raw: bytes) -> str:
    """The start of a response body as text a PostgreSQL column can hold (no NUL)."""
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:EXCERPT_CHARS]


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"No answer within {timeout:g} s."
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST ``body`` to ``target``, trying its addresses in order until one connects.

    Never raises for a network failure: the answer carries ``error`` instead. ``latency_ms``
    runs from the first connection attempt to the end of reading the excerpt.
    """
    started = time.perf_counter()
    error = "No address to connect to."
    for address in target.addresses:
        kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        connection = kind(address, target, timeout)
        try:
            try:
                connection.connect()
            except OSError as exc:
                error = _describe(exc, timeout)
                continue
            try:
                connection.request(
                    "POST",
                    target.path,
                    body=body,
                    headers={**headers, "User-Agent": USER_AGENT, "Connection": "close"},
                )
                response = connection.getresponse()
                raw = response.read(EXCERPT_CHARS * 4)
            except (OSError, http.client.HTTPException) as exc:
                # Connected and sent (perhaps in part): the receiver may have acted on it, so
                # this counts as the attempt rather than trying the next address.
                return Answer(None, _ms(started), "", _describe(exc, timeout))
            return Answer(response.status, _ms(started), excerpt(raw), "")
        finally:
            connection.close()
    return Answer(None, _ms(started), "", error)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
