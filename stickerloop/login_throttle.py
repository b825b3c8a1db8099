"""Login throttling: failed passwords counted per username and per client address.

Counters and locks live in Django's cache (Redis when configured, so that every web process sees
them; process memory on a single machine). After ``LOGIN_MAX_ATTEMPTS`` failures for one username
within ``LOGIN_LOCKOUT_SECONDS``, or ``LOGIN_MAX_ATTEMPTS_PER_IP`` from one address, that username
or address is locked for ``LOGIN_LOCKOUT_SECONDS``; even the right password is refused meanwhile.
A successful login clears its username's count. The login page, the admin site's login and
``POST /api/auth/token/`` all go through here (stickerloop.views) and share the counts.
"""

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def client_ip(request) -> str:
    """The caller's address: ``REMOTE_ADDR``, or the header the proxy in front sets."""
    header = settings.LOGIN_CLIENT_IP_HEADER
    if header and request.META.get(header):
        # X-Forwarded-For may list several hops; the first is the client the proxy saw.
        return request.META[header].split(",")[0].strip()
    return request.META.get("REMOTE_ADDR", "")


def _keys(kind: str, value: str) -> tuple[str, str]:
    # Hashed: usernames may hold characters memcached-style key checks refuse, and any length.
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"login-fail:{kind}:{digest}", f"login-lock:{kind}:{digest}"


def _subjects(*, username: str, ip: str) -> list[tuple[str, str, int]]:
    return [
        ("user", username.lower(), settings.LOGIN_MAX_ATTEMPTS),
        ("ip", ip, settings.LOGIN_MAX_ATTEMPTS_PER_IP),
    ]


def login_lock_remaining(*, username: str, ip: str) -> int:
    """Seconds until this username and address may try again; 0 when neither is locked."""
    now = time.time()
    remaining = 0
    for kind, value, _limit in _subjects(username=username, ip=ip):
        until = cache.get(_keys(kind, value)[1])
        if until:
            remaining = max(remaining, int(until - now) + 1)
    return remaining


def login_failure_record(*, username: str, ip: str) -> None:
    """Count a wrong password; lock the username or the address that reaches its limit."""
    lockout = settings.LOGIN_LOCKOUT_SECONDS
    for kind, value, limit in _subjects(username=username, ip=ip):
        count_key, lock_key = _keys(kind, value)
        cache.add(count_key, 0, timeout=lockout)
        try:
            count = cache.incr(count_key)
        except ValueError:  # expired between add and incr
            cache.set(count_key, 1, timeout=lockout)
            count = 1
        if count >= limit:
            cache.set(lock_key, time.time() + lockout, timeout=lockout)
            cache.delete(count_key)
            logger.warning(
                "Login locked for %s seconds after %s failures: %s %r (from %s)",
                lockout,
                count,
                kind,
                value if kind == "ip" else username,
                ip,
            )


def login_success_record(*, username: str) -> None:
    """A right password clears the username's failures (the address keeps its count)."""
    cache.delete(_keys("user", username.lower())[0])
