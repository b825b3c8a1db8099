"""Whether this process's database, broker and storage answer: ``/readyz`` and ``preflight``.

Each check opens its own connection with a short timeout, never the libraries' defaults (libpq
waits forever on a silent host, redis-py five seconds and then retries, botocore a minute and
then retries), and raises ``Unavailable`` with one line for an operator. ``/readyz`` runs the
three checks at once under one deadline and answers only each part's state; the reasons, which
may name hosts, go to the log. ``preflight`` runs them one after another with longer timeouts,
and also checks what only start-up needs to know: migrations applied, the bucket writable.

Only the parts' names leave this module in HTTP answers: no URL, host or credential.
"""

import logging
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import load_backend
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

PARTS = ("database", "broker", "storage")
OK = "ok"
UNAVAILABLE = "unavailable"

# /readyz: each library's connect and read timeout, and the deadline for the three checks run
# at once. A part that stopped answers 503 within READY_DEADLINE_SECONDS plus the reuse window
# of a result (below): 1.75 s, under the 2 s that orchestrators are promised. The deadline leaves
# a healthy check half a second beyond the timeouts: on a loaded 2-core host a fresh database
# connection alone took over a second.
READY_TIMEOUT_SECONDS = 1.0
READY_DEADLINE_SECONDS = 1.5
# A result this young is answered again rather than checked anew: /readyz needs no login, and a
# flood of it must not open a database connection per request. One check runs at a time per
# process; callers that arrive meanwhile wait for it and share its result.
READY_REUSE_SECONDS = 0.25
# preflight: a start-up may wait a little longer for a part that is slow to answer.
PREFLIGHT_TIMEOUT_SECONDS = 3.0


class Unavailable(Exception):
    """A part failed its check. ``str()`` is one line naming the part first (``database: ...``);
    it may name hosts and paths, so it goes to logs and stderr, never into an HTTP answer."""

    def __init__(self, part: str, reason: str):
        self.part = part
        super().__init__(f"{part}: {reason}")


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without the blank padding libpq puts in."""
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text[:300]


# The database --------------------------------------------------------------------------------


def _database_wrapper(timeout: float):
    """A new connection wrapper for the default database, outside Django's per-thread ones,
    with ``timeout`` as its connect timeout (the settings are read now, not at start-up)."""
    settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
    options = dict(settings_dict.get("OPTIONS") or {})
    if "postgresql" in settings_dict["ENGINE"]:
        # libpq counts whole seconds; it also bounds the start-up exchange after the TCP
        # connect, so a server that accepts but never answers fails here too.
        options["connect_timeout"] = max(1, round(timeout))
    elif "sqlite" in settings_dict["ENGINE"]:
        options["timeout"] = timeout
    backend = load_backend(settings_dict["ENGINE"])
    return backend.DatabaseWrapper({**settings_dict, "OPTIONS": options}, DEFAULT_DB_ALIAS)


def check_database(*, timeout: float, migrations: bool = False) -> None:
    """Connect and run ``SELECT 1``; with ``migrations``, also refuse unapplied migrations."""
    wrapper = _database_wrapper(timeout)
    try:
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise Unavailable("database", f"cannot connect: {one_line(exc)}") from exc
        if migrations:
            executor = MigrationExecutor(wrapper)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if plan:
                first = plan[0][0]
                raise Unavailable(
                    "database",
                    f"{len(plan)} migrations not applied, the first {first.app_label}."
                    f"{first.name} (run `python manage.py migrate`)",
                )
    finally:
        wrapper.close()


# The broker ----------------------------------------------------------------------------------


def redis_client(url: str, *, timeout: float):
    """A Redis client that gives up after ``timeout`` seconds and does not retry."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _check_folder(part: str, folder: Path) -> None:
    """The folder exists and a file can be made in it (a real write: root passes any mode
    check, and a read-only mount is only found by trying)."""
    if not folder.is_dir():
        raise Unavailable(part, f"the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ready-"):
            pass
    except OSError as exc:
        raise Unavailable(part, f"cannot write to {folder}: {one_line(exc)}") from exc


def check_broker(*, timeout: float) -> None:
    url = settings.CELERY_BROKER_URL
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        client = redis_client(url, timeout=timeout)
        try:
            client.ping()
        except Exception as exc:
            raise Unavailable("broker", f"cannot reach Redis: {one_line(exc)}") from exc
        finally:
            client.close()
    elif scheme == "filesystem":
        _check_folder("broker", Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
    else:
        raise Unavailable("broker", f"no check for a {scheme}:// broker (redis or filesystem)")


# The storage ---------------------------------------------------------------------------------

_s3_clients: dict = {}
_s3_lock = threading.Lock()


def _s3_storage_class():
    """The default storage's class when it is an S3 one, else None."""
    from storages.backends.s3 import S3Storage

    cls = import_string(settings.STORAGES["default"]["BACKEND"])
    return cls if issubclass(cls, S3Storage) else None


def _s3_client_and_bucket(cls, timeout: float):
    """The configured S3 storage's own client, with short timeouts and no retries; made once per
    process (building a boto3 client costs about 0.1 s) and shared, as boto3 clients may be."""
    from botocore.config import Config

    options = settings.STORAGES["default"].get("OPTIONS", {})
    key = (cls, repr(sorted(options.items())), timeout)
    with _s3_lock:
        if key not in _s3_clients:
            storage = cls(**options)
            storage.client_config = storage.client_config.merge(
                Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"max_attempts": 1, "mode": "standard"},
                )
            )
            _s3_clients[key] = (storage.connection.meta.client, storage.bucket_name)
        return _s3_clients[key]


def _s3_problem(exc: Exception, bucket: str, *, writing: bool = False) -> str:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials (STICKERLOOP_S3_ACCESS_KEY, STICKERLOOP_S3_SECRET_KEY)"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return f"the bucket {bucket!r} does not exist (STICKERLOOP_S3_BUCKET)"
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            # The bucket answered HEAD to these credentials but refuses them an object: they
            # may read (a read-only key), not write.
            refused = "cannot be written with" if writing else "refused"
            return (
                f"the bucket {bucket!r} {refused} these credentials "
                "(STICKERLOOP_S3_ACCESS_KEY, STICKERLOOP_S3_SECRET_KEY)"
            )
    return f"cannot reach the bucket {bucket!r}: {one_line(exc)}"


def check_storage(*, timeout: float, write: bool = False) -> None:
    """The bucket answers (and with ``write``, takes and gives back an object), or the media
    folder exists and takes a file."""
    cls = _s3_storage_class()
    if cls is None:
        _check_folder("storage", Path(settings.MEDIA_ROOT))
        return
    client, bucket = _s3_client_and_bucket(cls, timeout)
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        raise Unavailable("storage", _s3_problem(exc, bucket)) from exc
    if write:
        key = f".preflight/{time.time_ns()}"
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"")
            client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise Unavailable("storage", _s3_problem(exc, bucket, writing=True)) from exc


# /readyz -------------------------------------------------------------------------------------

_ready_lock = threading.Lock()
_ready_last: tuple[float, dict[str, str]] | None = None


def _check_all() -> dict[str, str]:
    checks = {
        "database": lambda: check_database(timeout=READY_TIMEOUT_SECONDS),
        "broker": lambda: check_broker(timeout=READY_TIMEOUT_SECONDS),
        "storage": lambda: check_storage(timeout=READY_TIMEOUT_SECONDS),
    }
    # A pool per call: a check stuck past the deadline keeps its thread until its own timeout
    # ends it, and never delays the next call's checks.
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures = {part: pool.submit(check) for part, check in checks.items()}
    wait(futures.values(), timeout=READY_DEADLINE_SECONDS)
    pool.shutdown(wait=False)
    states = {}
    for part, future in futures.items():
        if not future.done():
            states[part] = UNAVAILABLE
            logger.warning("readyz: %s: no answer within %s s", part, READY_DEADLINE_SECONDS)
        elif future.exception() is not None:
            states[part] = UNAVAILABLE
            logger.warning("readyz: %s", one_line(future.exception()))
        else:
            states[part] = OK
    return states


def readiness() -> dict[str, str]:
    """``{part: "ok" | "unavailable"}`` for the database, the broker and the storage."""
    global _ready_last
    with _ready_lock:
        if _ready_last is None or time.monotonic() - _ready_last[0] > READY_REUSE_SECONDS:
            states = _check_all()
            _ready_last = (time.monotonic(), states)
        return dict(_ready_last[1])


# preflight -----------------------------------------------------------------------------------


def _make_media_folder() -> None:
    """FileSystemStorage makes folders as it saves; the media folder itself is made here, once,
    so that /readyz can take a missing one for a lost volume."""
    if _s3_storage_class() is None:
        try:
            Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(
                "storage", f"cannot make {settings.MEDIA_ROOT}: {one_line(exc)}"
            ) from exc


def preflight(*, timeout: float = PREFLIGHT_TIMEOUT_SECONDS) -> None:
    """Raise ``Unavailable`` for the first part that is unreachable or misconfigured: the
    database (reachable, every migration applied), the broker, the storage (the bucket exists
    and takes an object; the media folder, made if missing, takes a file). Any other error on
    the way (a malformed URL, a storage that cannot be built) is named after its part too."""
    steps = (
        ("database", lambda: check_database(timeout=timeout, migrations=True)),
        ("broker", lambda: check_broker(timeout=timeout)),
        ("storage", _make_media_folder),
        ("storage", lambda: check_storage(timeout=timeout, write=True)),
    )
    for part, step in steps:
        try:
            step()
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable(part, one_line(exc)) from exc
