"""Which URLs a webhook may call, checked on literal addresses and on names (the resolver is
the one boundary replaced, for names that have no DNS here)."""

import socket

import pytest

from webhooks import signing
from webhooks.addresses import AddressRefused, check_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/hook", "Only http and https URLs are allowed, not 'ftp'."),
        ("javascript:alert(1)", "Only http and https URLs are allowed, not 'javascript'."),
        ("example.org/hook", "Only http and https URLs are allowed, not 'none'."),
        ("http:///hook", "The URL names no host."),
        ("http://example.org:99999/", "Not a valid URL: Port out of range 0-65535."),
    ],
)
def test_urls_that_are_not_http_are_refused(url, message):
    with pytest.raises(AddressRefused) as refused:
        check_url(url, allow_private=True)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("url", "shown", "kind"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1", "loopback"),
        ("http://[::1]/hook", "::1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://10.1.2.3/", "10.1.2.3", "private"),
        ("http://172.16.0.5/", "172.16.0.5", "private"),
        ("https://192.168.1.10/", "192.168.1.10", "private"),
        ("http://[fd00::1]/", "fd00::1", "private"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://100.64.0.1/", "100.64.0.1", "reserved"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(url, shown, kind):
    with pytest.raises(AddressRefused) as refused:
        check_url(url, allow_private=False)
    assert str(refused.value) == (
        f"{shown} is a {kind} address; webhooks may call only public addresses "
        "(STICKERLOOP_WEBHOOK_ALLOW_PRIVATE allows others)."
    )
    assert check_url(url, allow_private=True).addresses == (shown,)


def test_a_public_address_is_accepted_with_its_parts():
    target = check_url("https://93.184.216.34/hooks/in?team=ml", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https",
        "93.184.216.34",
        443,
        "/hooks/in?team=ml",
        ("93.184.216.34",),
    )


def test_a_name_is_refused_when_any_of_its_addresses_is_not_public(monkeypatch):
    answers = [("93.184.216.34", 80), ("10.0.0.7", 80), ("93.184.216.34", 80)]
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", x) for x in answers],
    )
    with pytest.raises(AddressRefused) as refused:
        check_url("http://mixed.example.test/", allow_private=False)
    assert str(refused.value).startswith(
        "mixed.example.test resolves to 10.0.0.7, which is a private address;"
    )
    # Allowed, every address is kept once, in the resolver's order.
    assert check_url("http://mixed.example.test/", allow_private=True).addresses == (
        "93.184.216.34",
        "10.0.0.7",
    )


def test_localhost_is_refused_by_what_it_resolves_to():
    with pytest.raises(AddressRefused, match=r"^localhost resolves to .*, which is a loopback"):
        check_url("http://localhost:8000/", allow_private=False)


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(AddressRefused) as refused:
        check_url("https://nowhere.example.test/", allow_private=True)
    assert str(refused.value) == (
        "The host 'nowhere.example.test' could not be resolved ([Errno -2] Name or service not "
        "known)."
    )


def test_the_signature_is_hmac_sha256_over_the_timestamp_and_body():
    header = signing.header_value(["whsec_new", "whsec_old"], 1738324800, b'{"a":1}')

    assert header == (
        "t=1738324800,"
        "v1=" + signing.signature("whsec_new", 1738324800, b'{"a":1}') + ","
        "v1=" + signing.signature("whsec_old", 1738324800, b'{"a":1}')
    )
    # HMAC-SHA256(key="whsec_new", message='1738324800.{"a":1}'), as `openssl dgst -sha256
    # -hmac whsec_new` prints it.
    assert signing.signature("whsec_new", 1738324800, b'{"a":1}') == (
        "6cf06ef30031bd9e2f7d008a473295f8d5b4a58db8c0bd6de80749c431bed737"
    )
    assert signing.verify(header, b'{"a":1}', "whsec_old", now=1738324800 + 299)
    assert not signing.verify(header, b'{"a":1}', "whsec_old", now=1738324800 + 301)
    assert not signing.verify(header, b'{"a":2}', "whsec_new", now=1738324800)
    assert not signing.verify("v1=" + "0" * 64, b'{"a":1}', "whsec_new", now=1738324800)
