"""Shared set-up for the benchmarks: a scratch PostgreSQL database, Django, real workers.

Benchmarks print figures; they are not tests. Each uses its own database (``<name>_bench``) so a
run never touches development or test data.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/stickerloop"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server the caller starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_database_url(suffix: str) -> str:
    """Create (or empty) ``<db>_<suffix>`` on the configured PostgreSQL server; return its URL."""
    import psycopg2

    base = urlparse(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    if not base.scheme.startswith("postgres"):
        sys.exit("benchmarks need PostgreSQL: set DATABASE_URL to a postgres:// URL")
    name = f"{base.path.lstrip('/') or 'stickerloop'}_{suffix}"
    admin = psycopg2.connect(
        host=base.hostname,
        port=base.port or 5432,
        user=base.username or "postgres",
        password=base.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)  # noqa: UP031 - identifier
        cur.execute("CREATE DATABASE %s" % name)  # noqa: UP031 - identifier
    admin.close()
    return urlunparse(base._replace(path=f"/{name}"))


def setup_django(suffix: str, *, broker_url: str | None = None) -> dict:
    """Point Django at a fresh scratch database and migrate it; return the env for workers."""
    env = {
        "DATABASE_URL": scratch_database_url(suffix),
        "CELERY_BROKER_URL": broker_url or os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER_URL),
        "STICKERLOOP_MEDIA_ROOT": tempfile.mkdtemp(prefix=f"stickerloop-{suffix}-media-"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DJANGO_SETTINGS_MODULE": "stickerloop.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if env["CELERY_BROKER_URL"].startswith("redis://"):
        import redis

        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    return env


def start_worker(
    queues: str, env: dict, log_path: Path, *extra: str, loglevel: str = "WARNING"
) -> subprocess.Popen:
    """A solo-pool Celery worker on ``queues`` in its own process group (stop it with
    ``stop_worker``), with ``env`` over this process's environment, logging to ``log_path``.
    The test suite starts its workers here too."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "stickerloop",
            "worker",
            "-Q",
            queues,
            "--pool",
            "solo",
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_site(
    env: dict, port: int, log_path: Path, *options: str, extra_env: dict | None = None
) -> subprocess.Popen:
    """The site under gunicorn on 127.0.0.1:``port`` in its own process group (stop it with
    ``stop_worker``), with ``env`` and ``extra_env`` over this process's environment, DEBUG off
    and warnings only, logging to ``log_path``; ``options`` are the benchmark's gunicorn flags
    (workers, worker class, keep-alive)."""
    return subprocess.Popen(
        [
            sys.executable,
            *("-m", "gunicorn", "stickerloop.wsgi", "--bind", f"127.0.0.1:{port}"),
            *("--log-level", "warning"),
            *options,
        ],
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "DJANGO_DEBUG": "0",
            "STICKERLOOP_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        },
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until(predicate, *, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        time.sleep(interval)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def vm_hwm_mb(pid: int | str = "self") -> float:
    """A live process's peak resident set since it started or since ``reset_vm_hwm``, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def reset_vm_hwm() -> None:
    """Start this process's peak resident set afresh (Linux ``clear_refs`` 5), so a stage's peak
    can be told apart from the set-up's before it."""
    Path("/proc/self/clear_refs").write_text("5")


def refuse_unless_it_fits(what: str, *, disk_bytes: int = 0, memory_bytes: int = 0) -> None:
    """Stop with a message before set-up when the disk or the memory cannot hold the run (``what``
    names its size), rather than fill the disk half way through or swap. PostgreSQL is taken to
    run on this machine, on the disk that holds the temporary folder."""
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if disk_bytes > free:
        sys.exit(
            f"{what} need about {disk_bytes / 1e9:.1f} GB of disk; {free / 1e9:.1f} GB is free."
        )
    available = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    if memory_bytes > available:
        sys.exit(
            f"{what} need about {memory_bytes / 1024**3:.1f} GiB of available memory; "
            f"{available / 1024**3:.1f} GiB is."
        )


def emit(figures: dict) -> None:
    print(json.dumps(figures), flush=True)
