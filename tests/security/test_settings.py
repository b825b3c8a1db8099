"""Production refuses a weak secret key and turns on HTTPS-only cookies and HSTS."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent.parent
STRONG_KEY = "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWX"
WEAK = (
    "DJANGO_SECRET_KEY is too weak for production: it needs at least 50 characters and at least "
    "5 distinct ones, and must not start with 'django-insecure-'"
)
SHOW = (
    "import json, stickerloop.settings as s; print(json.dumps({n: getattr(s, n, None) for n in "
    "['SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
    "'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
    "'SECURE_PROXY_SSL_HEADER']}))"
)


def _run(code: str, *args: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STICKERLOOP_"))}
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("key", ["abcde", "ab" * 40, "django-insecure-" + STRONG_KEY])
def test_production_refuses_a_weak_secret_key(key):
    result = _run(
        "import stickerloop.settings", STICKERLOOP_ENV="production", DJANGO_SECRET_KEY=key
    )
    assert result.returncode != 0
    assert WEAK in result.stderr


def test_production_settings_are_https_only():
    result = _run(
        SHOW,
        STICKERLOOP_ENV="production",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_a_malformed_proxy_header_is_named():
    result = _run(
        "import stickerloop.settings",
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
    )
    assert result.returncode != 0
    assert (
        "DJANGO_SECURE_PROXY_SSL_HEADER must look like 'HTTP_X_FORWARDED_PROTO,https', "
        "not 'X-Forwarded-Proto'"
    ) in result.stderr


def test_check_deploy_has_no_warnings_from_our_settings():
    result = _run(
        "",
        "manage.py",
        "check",
        "--deploy",
        STICKERLOOP_ENV="production",
        DJANGO_SECRET_KEY=STRONG_KEY,
    )
    assert result.returncode == 0, result.stderr
    issues = set(re.findall(r"\(([a-z_]+\.[A-Z]\d{3})\)", result.stdout + result.stderr))
    # drf-spectacular's schema warnings are another piece of work.
    assert {i for i in issues if not i.startswith("drf_spectacular.")} == set()


def test_database_connections_are_checked_before_reuse():
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


def test_probes_reach_the_site_on_loopback_whatever_the_allowed_hosts():
    result = _run(
        "import json, stickerloop.settings as s; print(json.dumps(s.ALLOWED_HOSTS))",
        DJANGO_ALLOWED_HOSTS="stickers.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["stickers.example.com", "127.0.0.1", "localhost", "[::1]"]


def test_probes_are_not_redirected_to_https(client, settings):
    # given: production behind a TLS proxy, which redirects plain HTTP
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["stickers.example.com", *settings.LOOPBACK_HOSTS]
    # then: a probe inside the container is answered; a page is sent to HTTPS
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    response = client.get("/login/", HTTP_HOST="127.0.0.1:8000")
    assert (response.status_code, response["Location"]) == (301, "https://127.0.0.1:8000/login/")
    assert client.get("/healthz", HTTP_HOST="evil.example.org").status_code == 400
