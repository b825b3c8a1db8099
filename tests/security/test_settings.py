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


@pytest.mark.postgresql
def test_database_connections_are_checked_before_reuse():
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


SHOW_SESSIONS_AND_CSP = (
    "import json, stickerloop.settings as s; print(json.dumps({n: getattr(s, n) for n in "
    "['SESSION_COOKIE_AGE', 'SESSION_MAX_SECONDS', 'SESSION_COOKIE_HTTPONLY', "
    "'SESSION_COOKIE_SAMESITE', 'CSP_MEDIA_ORIGINS']}))"
)


def test_session_and_csp_defaults():
    result = _run(SHOW_SESSIONS_AND_CSP)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SESSION_COOKIE_AGE": 28_800,
        "SESSION_MAX_SECONDS": 86_400,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSP_MEDIA_ORIGINS": [],
    }


def test_a_bucket_endpoint_is_an_image_origin_unless_origins_are_named():
    bucket = {
        "STICKERLOOP_S3_BUCKET": "stickers",
        "STICKERLOOP_S3_ENDPOINT_URL": "http://minio:9000/",
    }
    result = _run(SHOW_SESSIONS_AND_CSP, **bucket)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["CSP_MEDIA_ORIGINS"] == ["http://minio:9000"]
    result = _run(
        SHOW_SESSIONS_AND_CSP,
        **bucket,
        STICKERLOOP_CSP_MEDIA_ORIGINS="https://media.example.org, https://*.cdn.example.org:8443",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["CSP_MEDIA_ORIGINS"] == [
        "https://media.example.org",
        "https://*.cdn.example.org:8443",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"STICKERLOOP_S3_BUCKET": "stickers"},
            "STICKERLOOP_CSP_MEDIA_ORIGINS must name the bucket's origin (e.g. "
            "https://my-bucket.s3.eu-west-1.amazonaws.com) when STICKERLOOP_S3_ENDPOINT_URL is "
            "unset",
        ),
        (
            {"STICKERLOOP_CSP_MEDIA_ORIGINS": "https://a.example.org; script-src *"},
            "STICKERLOOP_CSP_MEDIA_ORIGINS must be comma-separated origins like "
            "https://media.example.org, not 'https://a.example.org; script-src *'",
        ),
        (
            {"STICKERLOOP_CSP_MEDIA_ORIGINS": "https://a.example.org/media/"},
            "STICKERLOOP_CSP_MEDIA_ORIGINS must be comma-separated origins like "
            "https://media.example.org, not 'https://a.example.org/media/'",
        ),
        (
            {"STICKERLOOP_SESSION_IDLE_SECONDS": "30"},
            "STICKERLOOP_SESSION_IDLE_SECONDS must be at least 60, not 30",
        ),
        (
            {"STICKERLOOP_SESSION_IDLE_SECONDS": "7200", "STICKERLOOP_SESSION_MAX_SECONDS": "3600"},
            "STICKERLOOP_SESSION_MAX_SECONDS (3600) must be at least "
            "STICKERLOOP_SESSION_IDLE_SECONDS (7200)",
        ),
    ],
)
def test_bad_session_or_csp_settings_stop_start_up(env, message):
    result = _run("import stickerloop.settings", **env)
    assert result.returncode != 0
    assert message in result.stderr


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
