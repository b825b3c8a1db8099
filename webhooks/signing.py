"""The signature header: ``Stickerloop-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``.

Each ``v1`` is HMAC-SHA256, keyed with an endpoint secret, over ``"<t>." + body`` (the raw body
bytes). While a rotated secret's overlap lasts there are two: the new secret's first, then the
old one's, so a receiver holding either verifies. The timestamp is signed with the body, so a
receiver that refuses old timestamps refuses replays. Django-free: the README's verification
snippet is the receiver's side of the same few lines.
"""

import hashlib
import hmac
import secrets

HEADER = "Stickerloop-Signature"
SCHEME = "v1"
# The default tolerance of ``verify``: a delivery older than this is refused as a replay.
TOLERANCE_SECONDS = 300


def new_secret(prefix: str) -> str:
    """32 random bytes, URL-safe, behind ``prefix``."""
    return prefix + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header_value(secrets_in_order: list[str], timestamp: int, body: bytes) -> str:
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={signature(secret, timestamp, body)}" for secret in secrets_in_order]
    return ",".join(parts)


def verify(
    header: str, body: bytes, secret: str, *, now: float, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """Whether ``header`` holds a ``v1`` signature of ``body`` by ``secret`` with a timestamp
    within ``tolerance`` seconds of ``now``. The tests verify deliveries with it."""
    timestamp, candidates = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
