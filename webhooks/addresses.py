"""Which URLs a webhook may call: http(s) only, and, unless private addresses are allowed, only
hosts whose every address is public.

Checked when an endpoint is registered and again before every send, on a fresh lookup: a name
that resolved to a public address at registration may point at 127.0.0.1 or the cloud metadata
address later (DNS rebinding). The sender then connects to the very addresses checked here, so a
second lookup between the check and the connection cannot slip another one in. Django-free.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and the TLS server name)
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[str, ...]  # the checked addresses, in the resolver's order


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes ``address`` non-public, or None for a public one."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return _kind(mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; raises AddressRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"Not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise AddressRefused(f"Only http and https URLs are allowed, not {scheme or 'none'!r}.")
    if not parts.hostname:
        raise AddressRefused("The URL names no host.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme], path


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"The host {host!r} could not be resolved ({exc}).") from exc
    found: list[str] = []
    for info in infos:
        address = info[4][0].split("%", 1)[0]  # an IPv6 zone id is not part of the address
        if address not in found:
            found.append(address)
    if not found:
        raise AddressRefused(f"The host {host!r} resolves to no address.")
    return tuple(found)


def check_url(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host and check every address; the target to connect to.

    Raises AddressRefused naming the address and its kind when one is loopback, link-local,
    private or otherwise not public and ``allow_private`` is off, or when the URL is not
    http(s) or its host does not resolve.
    """
    scheme, host, port, path = split_url(url)
    addresses = resolve(host, port)
    if not allow_private:
        for text in addresses:
            kind = _kind(ipaddress.ip_address(text))
            if kind is not None:
                shown = host if host == text else f"{host} resolves to {text}, which"
                raise AddressRefused(
                    f"{shown} is a {kind} address; webhooks may call only public addresses "
                    "(STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows others)."
                )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
