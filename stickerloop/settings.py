"""Stickerloop settings: one module, read from the environment, failing loudly.

Single-machine defaults (``make run``): SQLite and Celery's filesystem transport under ``var/``,
media under ``var/media``, the tiny offline models under ``var/models``. Set ``DATABASE_URL``,
``CELERY_BROKER_URL`` and ``STICKERLOOP_S3_BUCKET`` to run on real services. With
``STICKERLOOP_ENV=production`` a missing secret or DEBUG left on stops start-up.
"""

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from exc


# The hub is unreachable on the project's machines; without these a lookup retries for minutes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

STICKERLOOP_ENV = env("STICKERLOOP_ENV", "development")
if STICKERLOOP_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(
        f"STICKERLOOP_ENV must be 'development' or 'production', not {STICKERLOOP_ENV!r}"
    )
PRODUCTION = STICKERLOOP_ENV == "production"

_DEV_SECRET_KEY = "django-insecure-stickerloop-development-only"
SECRET_KEY = env("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION:
    if SECRET_KEY == _DEV_SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")
    # Django's own rule (security.W009), made fatal: a short or repetitive key can be guessed.
    _weak = len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5
    if _weak or SECRET_KEY.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is too weak for production: it needs at least 50 characters and "
            "at least 5 distinct ones, and must not start with 'django-insecure-' (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
        )
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")

# The loopback names are always allowed, whatever DJANGO_ALLOWED_HOSTS says: a health check run
# inside the web container (docker compose, an exec probe) asks http://127.0.0.1:8000/healthz,
# and Django refused it with a 400. Safe: a caller elsewhere who sends one of these names only
# gets URLs built on a name that points back at itself, and a browser sent to a rebound domain
# still sends that domain, which stays refused.
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = list(
    dict.fromkeys(
        [*env("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(","), *LOOPBACK_HOSTS]
    )
)
CSRF_TRUSTED_ORIGINS = [o for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

VAR_DIR = Path(env("STICKERLOOP_VAR_DIR", str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "stickerloop",
    "generation",
    "annotation",
    "annotation.quality",
    "training_bridge",
    "training_bridge.jobs",
    "training_bridge.experiments",
    "training_bridge.pipelines",
    "webhooks",
    "simulation",
]

MIDDLEWARE = [
    "stickerloop.logs.RequestIdMiddleware",
    "stickerloop.metrics.http.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "stickerloop.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "stickerloop.sessions.SessionLifetimeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "stickerloop.middleware.InputGuardMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "stickerloop.timezones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "stickerloop.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "stickerloop.urls"
WSGI_APPLICATION = "stickerloop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "stickerloop.roles.roles_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # A persistent connection the server dropped is noticed and replaced before the request
        # uses it, instead of failing that request with a 500.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that asks the socket before sending SELECT 1.
    DATABASES["default"]["ENGINE"] = "stickerloop.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; the web process and the worker share the file, so wait for
    # the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every password the site sets passes these (ASVS 2.1): at least 12 characters, not one of Django's
# 20,000 most common (breached) passwords, not close to the username or email. No composition rules
# (ASVS 2.1.9). stickerloop.services.user_create_with_roles applies them; so do the admin's forms.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Django's model backend, with the admin role holding every model permission (the admin site).
AUTHENTICATION_BACKENDS = ["stickerloop.roles.RoleModelBackend"]
# A new rater's one-time set-password link (stickerloop.services.password_set_path) works this
# long; Django's token generator reads PASSWORD_RESET_TIMEOUT, in seconds.
PASSWORD_RESET_TIMEOUT = env_int("STICKERLOOP_PASSWORD_LINK_HOURS", 72) * 3600
# Invitations: SMTP when a host is set, else printed to the console (development). The tests
# run on Django's in-memory backend (pytest-django sets it).
EMAIL_HOST = env("STICKERLOOP_EMAIL_HOST", "") or ""
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("STICKERLOOP_EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("STICKERLOOP_EMAIL_USER", "") or ""
    EMAIL_HOST_PASSWORD = env("STICKERLOOP_EMAIL_PASSWORD", "") or ""
    EMAIL_USE_TLS = env_bool("STICKERLOOP_EMAIL_TLS", True)
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("STICKERLOOP_EMAIL_FROM", "stickerloop@localhost") or ""
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sessions (stickerloop.sessions): a login ends after this long unused (the idle timeout, also the
# cookie's Max-Age), and however busy after SESSION_MAX_SECONDS; logging out deletes it. The
# cookie is out of reach of scripts and not sent on cross-site posts; HTTPS-only in production
# (below).
SESSION_COOKIE_AGE = env_int("STICKERLOOP_SESSION_IDLE_SECONDS", 8 * 3600)
SESSION_MAX_SECONDS = env_int("STICKERLOOP_SESSION_MAX_SECONDS", 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
if SESSION_COOKIE_AGE < 60:
    raise ImproperlyConfigured(
        f"STICKERLOOP_SESSION_IDLE_SECONDS must be at least 60, not {SESSION_COOKIE_AGE}"
    )
if SESSION_MAX_SECONDS < SESSION_COOKIE_AGE:
    raise ImproperlyConfigured(
        f"STICKERLOOP_SESSION_MAX_SECONDS ({SESSION_MAX_SECONDS}) must be at least "
        f"STICKERLOOP_SESSION_IDLE_SECONDS ({SESSION_COOKIE_AGE})"
    )

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the source folders until collectstatic has run (development, tests).
WHITENOISE_USE_FINDERS = not STATIC_ROOT.is_dir()
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("STICKERLOOP_MEDIA_ROOT", str(VAR_DIR / "media")))
# How long a rater's signed media URL (and a presigned bucket URL behind any media URL) stays
# valid: minutes, since the rating screen loads its items' files as soon as it leases them, and
# asks for fresh URLs (held items) when it is opened again.
STICKERLOOP_MEDIA_URL_SECONDS = env_int("STICKERLOOP_MEDIA_URL_SECONDS", 600)

S3_BUCKET = env("STICKERLOOP_S3_BUCKET")
# How the bucket storage behaves, wherever the bucket is: keys are deterministic (a re-run
# chunk or export overwrites its own files), and every URL handed out (media, export
# downloads) is presigned for STICKERLOOP_MEDIA_URL_SECONDS: downloads never pass through
# Django.
S3_STORAGE_OPTIONS = {
    # Signature version 4 (X-Amz-Expires): what MinIO and every AWS region take.
    "signature_version": "s3v4",
    "file_overwrite": True,
    "querystring_auth": True,
    "querystring_expire": STICKERLOOP_MEDIA_URL_SECONDS,
}
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **S3_STORAGE_OPTIONS,
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("STICKERLOOP_S3_ENDPOINT_URL"),
            "access_key": env("STICKERLOOP_S3_ACCESS_KEY"),
            "secret_key": env("STICKERLOOP_S3_SECRET_KEY"),
            "region_name": env("STICKERLOOP_S3_REGION"),
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Candidate keys are deterministic; a re-run chunk overwrites its own files.
        "OPTIONS": {"allow_overwrite": True},
    }
# Content-Security-Policy (stickerloop.csp): origins images may load from besides the site's own.
# With a bucket, media URLs redirect to presigned bucket URLs: its endpoint's origin by default;
# without an endpoint URL (AWS S3 itself) the bucket's origin must be named here.
_csp_media_origins = env("STICKERLOOP_CSP_MEDIA_ORIGINS")
if _csp_media_origins is None and S3_BUCKET:
    _endpoint = urlsplit(env("STICKERLOOP_S3_ENDPOINT_URL") or "")
    if not _endpoint.netloc:
        raise ImproperlyConfigured(
            "STICKERLOOP_CSP_MEDIA_ORIGINS must name the bucket's origin (e.g. "
            "https://my-bucket.s3.eu-west-1.amazonaws.com) when STICKERLOOP_S3_ENDPOINT_URL is "
            "unset: images load from there and the Content-Security-Policy must allow it"
        )
    _csp_media_origins = f"{_endpoint.scheme}://{_endpoint.netloc}"
CSP_MEDIA_ORIGINS = [o.strip() for o in (_csp_media_origins or "").split(",") if o.strip()]
for _origin in CSP_MEDIA_ORIGINS:
    # Only origins: anything else (a path, a quote, a semicolon) would change the policy itself.
    if not re.fullmatch(r"https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?", _origin):
        raise ImproperlyConfigured(
            "STICKERLOOP_CSP_MEDIA_ORIGINS must be comma-separated origins like "
            f"https://media.example.org, not {_origin!r}"
        )
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "stickerloop.authentication.SessionAuthentication",
        "stickerloop.authentication.ExpiringTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "stickerloop.api.CheckedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "stickerloop.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "stickerloop.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stickerloop API",
    "DESCRIPTION": "Generation, rating, curation and training for sticker models.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs name every endpoint and field: behind login in production. Open in
    # development, where `make run` serves demo data to one machine.
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.IsAuthenticated"
        if PRODUCTION
        else "rest_framework.permissions.AllowAny"
    ],
    # Served from our own static files: the docs page must work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": f"/{STATIC_URL}favicon.svg",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Ids in paths (stickerloop.converters.IdConverter): integers that fit the bigint column.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 0, "maximum": 9_223_372_036_854_775_807}
    },
    # One name per choice set: many models have a "kind", "status" or "format" of their own.
    # RunStatus and TaskStatus share their choices, as do ChunkStatus and JobStatus: one name each.
    "ENUM_NAME_OVERRIDES": {
        "AuditActionEnum": "training_bridge.models.AuditAction",
        "BatchKindEnum": "generation.models.BatchKind",
        "BatchStatusEnum": "generation.models.BatchStatus",
        "CampaignKindEnum": "annotation.models.CampaignKind",
        "CampaignStatusEnum": "annotation.models.CampaignStatus",
        "CandidateKindEnum": "generation.models.CandidateKind",
        "DatasetKindEnum": "training_bridge.models.DatasetKind",
        "DatasetRoleEnum": "training_bridge.jobs.models.DatasetRole",
        "ExperimentAxisEnum": "training_bridge.experiments.models.Axis",
        "ExperimentStatusEnum": "training_bridge.experiments.models.ExperimentStatus",
        "EnhancerKindEnum": "generation.models.EnhancerKind",
        "ExportFormatEnum": "training_bridge.models.ExportFormat",
        "ImportFormatEnum": "training_bridge.models.ImportFormat",
        "JobStatusEnum": "training_bridge.jobs.models.JobStatus",
        "MembershipStatusEnum": "annotation.models.MembershipStatus",
        "ModelKindEnum": "generation.models.ModelKind",
        "PipelineStageKindEnum": "training_bridge.pipelines.models.StageKind",
        "PipelineStageStatusEnum": "training_bridge.pipelines.models.StageStatus",
        "PipelineStatusEnum": "training_bridge.pipelines.models.PipelineStatus",
        "PromptFileFormatEnum": "generation.models.PromptFileFormat",
        "RaterPromptEnum": "annotation.models.RaterPrompt",
        "ModelRoleEnum": "generation.models.ModelRole",
        "TaskStatusEnum": "training_bridge.models.TaskStatus",
        "TriggerOriginEnum": "training_bridge.models.TriggerOrigin",
        "TriggerStatusEnum": "training_bridge.models.TriggerStatus",
        "VersionStatusEnum": "training_bridge.models.VersionStatus",
        "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus",
        "WebhookEventTypeEnum": "webhooks.catalog.EventType",
    },
}

# Request input (stickerloop.middleware): JSON bodies nest at most this deep. Bodies other than
# uploaded files are capped by Django's DATA_UPLOAD_MAX_MEMORY_SIZE (set here so it is explicit).
REQUEST_JSON_MAX_DEPTH = env_int("STICKERLOOP_JSON_MAX_DEPTH", 32)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("STICKERLOOP_MAX_BODY_BYTES", 2_621_440)  # 2.5 MiB

# Login throttling (stickerloop.login_throttle) and API tokens (stickerloop.authentication).
LOGIN_MAX_ATTEMPTS = env_int("STICKERLOOP_LOGIN_MAX_ATTEMPTS", 5)
LOGIN_MAX_ATTEMPTS_PER_IP = env_int("STICKERLOOP_LOGIN_MAX_ATTEMPTS_PER_IP", 50)
LOGIN_LOCKOUT_SECONDS = env_int("STICKERLOOP_LOGIN_LOCKOUT_SECONDS", 900)
# The request header holding the client's address when a proxy stands in front, e.g.
# HTTP_X_FORWARDED_FOR; unset, REMOTE_ADDR (behind a proxy that would lock everyone out at once).
LOGIN_CLIENT_IP_HEADER = env("STICKERLOOP_CLIENT_IP_HEADER")
TOKEN_TTL_HOURS = env_int("STICKERLOOP_TOKEN_TTL_HOURS", 24 * 30)

# Campaigns (annotation.services.items): adding items that would take a campaign over this many
# is refused (400 naming the limit) before anything is inserted.
CAMPAIGN_MAX_ITEMS = env_int("STICKERLOOP_CAMPAIGN_MAX_ITEMS", 10_000_000)
# A web request adds items from a selection of at most this many candidates (4 to 8 s on two
# cores, depending on the hour); a larger one is added by a worker (an item load,
# annotation.services.item_loads): a request has a minute at most (gunicorn's --timeout), and
# 10,000,000 items take minutes.
CAMPAIGN_SYNC_MAX_ITEMS = env_int("STICKERLOOP_CAMPAIGN_SYNC_MAX_ITEMS", 200_000)

# Cache: shared by every process through Redis when there is one (login throttling must count
# across web workers), else this process's memory, so that `make run` needs no Redis.
REDIS_URL = env("REDIS_URL")
_cache_redis = REDIS_URL or (
    env("CELERY_BROKER_URL") if (env("CELERY_BROKER_URL") or "").startswith("redis") else None
)
if _cache_redis:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_redis,
            "KEY_PREFIX": "stickerloop",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Prometheus metrics at /metrics (stickerloop.metrics), for a scraper that sends
# "Authorization: Bearer <token>"; others get 403. Empty: /metrics answers 404 and requests are
# not counted. Workers keep task durations and failures in the cache's Redis; without one
# (`make run`) those are not kept.
METRICS_TOKEN = env("STICKERLOOP_METRICS_TOKEN", "")
METRICS_REDIS_URL = _cache_redis

# Celery. Without CELERY_BROKER_URL a single machine uses the filesystem transport under var/.
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir.mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A message a killed worker held unacknowledged goes back to the queue after this long.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Routing lives here rather than on each task: generation on GPU workers, training on train workers,
# everything else (planning, aggregation, dataset builds and exports) on default.
CELERY_TASK_ROUTES = {
    "generation.run_chunk": {"queue": "gpu"},
    "training_jobs.run": {"queue": "train"},
    # Named although it is the default: webhook sending must never land on the gpu or train
    # workers, whose one slot a slow receiver would hold.
    "webhooks.*": {"queue": "default"},
}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict = {}
# Quality control: recompute stored results of campaigns with new judgments. Every 30 s, so
# that a judgment reaches the results within a minute of being made while the default queue
# has a free worker; the check is one query, and only campaigns with new judgments run.
QUALITY_AGGREGATE_EVERY_SECONDS = env_int("STICKERLOOP_QUALITY_AGGREGATE_EVERY_SECONDS", 30)
CELERY_BEAT_SCHEDULE["quality-aggregate-periodic"] = {
    "task": "quality.aggregate_periodic",
    "schedule": float(QUALITY_AGGREGATE_EVERY_SECONDS),
}
# Experiments' results read their campaigns' judgments the same way, on the same clock.
CELERY_BEAT_SCHEDULE["experiments-recompute-periodic"] = {
    "task": "experiments.recompute_periodic",
    "schedule": float(QUALITY_AGGREGATE_EVERY_SECONDS),
}

# Self-healing: a beat sweep per app (generation chunks, dataset exports, training jobs, item
# loads) every SWEEP_EVERY_SECONDS requeues the rows whose worker died, without waiting for the
# broker's visibility timeout (an hour). A running task stamps its row's heartbeat every
# HEARTBEAT_SECONDS; a running chunk or export silent for SWEEP_STALE_SECONDS is requeued, and
# so is one still queued after SWEEP_QUEUED_SECONDS (its message was lost with a worker that
# had taken it). A requeued row goes back to QUEUED with a new message; a stale message that
# turns up too is a no-op once the row runs again (its heartbeat is fresh).
# Item loads need no heartbeat: a running load holds its row locked until it commits, so the
# sweep sends again the RUNNING ones it finds unlocked (annotation.services.item_loads).
SWEEP_EVERY_SECONDS = env_int("STICKERLOOP_SWEEP_EVERY_SECONDS", 30)
SWEEP_STALE_SECONDS = env_int("STICKERLOOP_SWEEP_STALE_SECONDS", 60)
SWEEP_QUEUED_SECONDS = env_int("STICKERLOOP_SWEEP_QUEUED_SECONDS", 900)
HEARTBEAT_SECONDS = env_int("STICKERLOOP_HEARTBEAT_SECONDS", 10)
# The export and training sweeps also remove the objects that killed runs staged and never
# completed (no _COMPLETE.json marker, stickerloop.storage): those of a failed or cancelled run
# once nothing was written there for SWEEP_STALE_SECONDS; those of no run in progress at all
# (no owner, or one done without a marker there) after STORAGE_STAGED_MAX_AGE_SECONDS (a day).
STORAGE_STAGED_MAX_AGE_SECONDS = env_int("STICKERLOOP_STORAGE_STAGED_MAX_AGE_SECONDS", 86400)
for _entry, _task in (
    ("generation-sweep-chunks", "generation.sweep_chunks"),
    ("annotation-sweep-item-loads", "annotation.sweep_item_loads"),
    ("curation-sweep-exports", "training_bridge.sweep_exports"),
    ("training-sweep-jobs", "training_jobs.sweep"),
    # Not a dead worker's row: a running pipeline whose advance message was lost moves on.
    ("pipelines-sweep", "pipelines.sweep"),
):
    CELERY_BEAT_SCHEDULE[_entry] = {"task": _task, "schedule": float(SWEEP_EVERY_SECONDS)}

# Webhooks (webhooks/): endpoints outside get signed JSON when a batch, campaign, dataset version,
# export, training job, evaluation or rater changes state. A delivery is one POST from the
# `default` queue with this timeout; a failed one is tried again after RETRY_FIRST_SECONDS,
# doubling each time (capped at 6 hours), while the next try falls within RETRY_HOURS of the
# first. An endpoint is disabled after DISABLE_AFTER failed tries in a row. ALLOW_PRIVATE lets
# endpoints resolve to loopback, link-local and private addresses (tests, a private network);
# off, such URLs are refused at registration and again at every send (DNS rebinding). SITE_URL
# is how receivers reach this site: the object URLs in the payloads start with it.
WEBHOOK_ALLOW_PRIVATE = env_bool("STICKERLOOP_WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT_SECONDS = env_int("STICKERLOOP_WEBHOOK_TIMEOUT_SECONDS", 5)
WEBHOOK_RETRY_FIRST_SECONDS = env_int("STICKERLOOP_WEBHOOK_RETRY_FIRST_SECONDS", 30)
WEBHOOK_RETRY_HOURS = env_int("STICKERLOOP_WEBHOOK_RETRY_HOURS", 24)
WEBHOOK_DISABLE_AFTER = env_int("STICKERLOOP_WEBHOOK_DISABLE_AFTER", 15)
WEBHOOK_SECRET_OVERLAP_HOURS = env_int("STICKERLOOP_WEBHOOK_SECRET_OVERLAP_HOURS", 24)
SITE_URL = (env("STICKERLOOP_SITE_URL", "http://127.0.0.1:8000") or "").rstrip("/")
for _name, _value, _least in (
    ("STICKERLOOP_WEBHOOK_TIMEOUT_SECONDS", WEBHOOK_TIMEOUT_SECONDS, 1),
    ("STICKERLOOP_WEBHOOK_RETRY_FIRST_SECONDS", WEBHOOK_RETRY_FIRST_SECONDS, 1),
    ("STICKERLOOP_WEBHOOK_RETRY_HOURS", WEBHOOK_RETRY_HOURS, 0),
    ("STICKERLOOP_WEBHOOK_DISABLE_AFTER", WEBHOOK_DISABLE_AFTER, 1),
    ("STICKERLOOP_WEBHOOK_SECRET_OVERLAP_HOURS", WEBHOOK_SECRET_OVERLAP_HOURS, 0),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name} must be at least {_least}, not {_value}")
if not SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"STICKERLOOP_SITE_URL must start with http:// or https://, not {SITE_URL!r}"
    )
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "webhooks.sweep",
    "schedule": float(SWEEP_EVERY_SECONDS),
}

# Annotation: expired leases go back to the pool (the rating step sweeps too, throttled).
CELERY_BEAT_SCHEDULE["annotation-expire-leases"] = {
    "task": "annotation.expire_leases",
    "schedule": 60.0,
}
# Leases one rater may hold per campaign (the current item and the prefetched ones), the undo
# window, how often one web process sweeps a campaign's expired leases, and whether the rating
# step runs as one PostgreSQL function (else as single statements; SQLite always does).
ANNOTATION_MAX_HELD_LEASES = env_int("STICKERLOOP_ANNOTATION_MAX_HELD_LEASES", 6)
ANNOTATION_UNDO_SECONDS = env_int("STICKERLOOP_ANNOTATION_UNDO_SECONDS", 120)
ANNOTATION_LEASE_SWEEP_SECONDS = env_int("STICKERLOOP_ANNOTATION_LEASE_SWEEP_SECONDS", 5)
ANNOTATION_RATE_STEP_IN_DATABASE = env_bool("STICKERLOOP_ANNOTATION_RATE_STEP_IN_DATABASE", True)

# Curation: whether draft dataset versions may be exported (off: only published versions reach
# training), the server folder that weak-corpus folder imports must lie under, local scratch and
# cache space for exports (empty: beside MEDIA_ROOT).
DATASET_EXPORT_DRAFTS = env_bool("STICKERLOOP_DATASET_EXPORT_DRAFTS", False)
# An export of more entries than this is written in parts, a task each, so that several
# workers share it (a part is a range of the manifest; parts are about equal).
DATASET_EXPORT_PART_ENTRIES = env_int("STICKERLOOP_DATASET_EXPORT_PART_ENTRIES", 50_000)
WEAK_IMPORT_ROOT = Path(env("STICKERLOOP_WEAK_IMPORT_ROOT", str(VAR_DIR / "imports")))
# A tar or Parquet weak-corpus upload may have at most this many bytes (2 GiB =
# 2,147,483,648 bytes), checked from the upload's size before it is read or stored.
WEAK_IMPORT_MAX_BYTES = env_int("STICKERLOOP_WEAK_IMPORT_MAX_BYTES", 2 * 2**30)
DATASET_WORK_DIR = env("STICKERLOOP_DATASET_WORK_DIR")

# Generation
MODELS_DIR = Path(env("STICKERLOOP_MODELS_DIR", str(VAR_DIR / "models")))
GENERATION_BATCH_SIZE = env_int("STICKERLOOP_GENERATION_BATCH_SIZE", 8)
GENERATION_CHUNK_SIZE = env_int("STICKERLOOP_GENERATION_CHUNK_SIZE", 32)
GENERATION_DEVICE = env("STICKERLOOP_DEVICE")
PIPELINE_CACHE_SIZE = env_int("STICKERLOOP_PIPELINE_CACHE_SIZE", 4)
# Prompt import: a bigger file is refused before it is parsed (2.45 million prompts in 21 MB
# ran past the web worker's timeout). 20 MiB = 20,971,520 bytes. A file over SYNC_BYTES
# (1 MiB = 1,048,576 bytes) is not parsed inside the web request: it is stored and imported
# by the `generation.import_prompts` task, and the API answers 202 with the import's status URL.
PROMPT_IMPORT_MAX_BYTES = env_int("STICKERLOOP_PROMPT_IMPORT_MAX_BYTES", 20 * 2**20)
PROMPT_IMPORT_MAX_ROWS = env_int("STICKERLOOP_PROMPT_IMPORT_MAX_ROWS", 100_000)
PROMPT_IMPORT_SYNC_BYTES = env_int("STICKERLOOP_PROMPT_IMPORT_SYNC_BYTES", 2**20)

# Training jobs: each job's spec, log, checkpoints and output model live in TRAINING_DIR/job-<id>.
TRAINING_DIR = Path(env("STICKERLOOP_TRAINING_DIR", str(VAR_DIR / "training")))
TRAINING_DEVICE = env("STICKERLOOP_TRAINING_DEVICE")
# A running job whose heartbeat is older than this is orphaned (its worker died): the sweep
# requeues it and it resumes from its last checkpoint. Its runner stamps the heartbeat every
# 0.5 s; 90 s plus the sweep's 30 s keeps recovery within 2 minutes.
TRAINING_STALE_SECONDS = env_int("STICKERLOOP_TRAINING_STALE_SECONDS", 90)

# Logs go to stderr; "json" writes one JSON object per line (stickerloop.logs) for a log
# collector. Every line carries the request id and the task id it was written under.
LOG_FORMAT = env("STICKERLOOP_LOG_FORMAT", "plain")
LOG_LEVEL = env("STICKERLOOP_LOG_LEVEL", "INFO")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(
        f"STICKERLOOP_LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "stickerloop.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "stickerloop.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only) would print its lines a second time, and
        # not as JSON; they reach the root's handler like every other line.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.db.backends": {"level": "WARNING"},
    },
}

if LOG_FORMAT == "json":
    # Python's warnings (a library's deprecation, Celery's warning about root) become log
    # records too, instead of raw lines on stderr between the JSON ones.
    logging.captureWarnings(True)

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
# Probes ask over plain HTTP from inside the network and carry nothing secret; a redirect to
# HTTPS would fail them. /metrics carries its token and stays under the HTTPS redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# Behind a TLS-terminating proxy: "HTTP_X_FORWARDED_PROTO,https" trusts that header for
# request.is_secure(). Only set it when the proxy overwrites the header on every request.
_proxy_ssl_header = env("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    _header, _, _value = _proxy_ssl_header.partition(",")
    if not _header.startswith("HTTP_") or not _value:
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must look like 'HTTP_X_FORWARDED_PROTO,https', "
            f"not {_proxy_ssl_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = (_header, _value)
