"""The docker-compose topology as local processes: the one list of what the many-process test
starts, read from ``docker-compose.yml`` itself.

Each app service (the ones built from the project's image) runs its compose command, with the
environment compose gives it; what differs on one machine without containers is listed here and
nowhere else, and ``tests/e2e/test_topology.py`` checks that nothing else differs:

- the backing services run as processes already there or started by the test: PostgreSQL and
  Redis on 127.0.0.1, and moto's S3 server instead of MinIO; the ``bucket`` step is a
  ``create_bucket`` call;
- hosts, credentials and volume paths point at those (``LOCAL_ENV``);
- commands differ only by ``COMMAND_CHANGES``: a free port for gunicorn, two gunicorn workers
  (two cores), beat's files in the test's folder, and a node name per worker (containers each
  have a host name of their own; processes on one host share it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The project's own processes, in start order: the one-shot init, then the long-running ones.
APP_SERVICES = ("init", "web", "worker-default", "worker-gpu", "worker-train", "beat")
# The other compose services and what stands in for each here.
BACKING_SERVICES = {
    "postgres": "the test PostgreSQL on 127.0.0.1",
    "redis": "Redis on 127.0.0.1",
    "minio": "moto_server on a free port",
    "bucket": "create_bucket through boto3",
}
WORKER_QUEUES = {"worker-default": "default", "worker-gpu": "gpu", "worker-train": "train"}
# The compose variables whose value points at a container, a volume or a secret; every other
# variable keeps compose's value.
LOCAL_ENV_KEYS = (
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "STICKERLOOP_S3_BUCKET",
    "STICKERLOOP_S3_ENDPOINT_URL",
    "STICKERLOOP_S3_ACCESS_KEY",
    "STICKERLOOP_S3_SECRET_KEY",
    "STICKERLOOP_MODELS_DIR",
    "STICKERLOOP_TRAINING_DIR",
)
# What a container has of its own and processes on one host must be given: a working folder
# (the image's var/), the region boto3 finds in a cloud's metadata, CPU training and one torch
# thread per process (on two cores, two threads spin against everything else), Django's
# connections closed after each request or task (the test empties the database at its end).
HOST_ENV_KEYS = (
    "STICKERLOOP_VAR_DIR",
    "AWS_DEFAULT_REGION",
    "STICKERLOOP_TRAINING_DEVICE",
    "OMP_NUM_THREADS",
    "DATABASE_CONN_MAX_AGE",
    "PATH",
    "PYTHONPATH",
)


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def resolve(value: str, env: dict[str, str]) -> str:
    """A compose value with ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``
    filled in from ``env``, as ``docker compose`` does."""

    def fill(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == "-":
            return arg
        raise KeyError(f"{name} must be set: {arg}")

    return _VARIABLE.sub(fill, str(value))


def command_changes(service: str, *, port: int, folder: Path) -> list[tuple[str, str]]:
    """(compose text, local text) pairs that turn ``service``'s compose command into the local
    one; each must occur in it."""
    if service == "web":
        return [("0.0.0.0:8000", f"127.0.0.1:{port}"), ("--workers 4", "--workers 2")]
    if service == "beat":
        return [
            ("/tmp/celerybeat-schedule", str(folder / "celerybeat-schedule")),
            ("/tmp/celerybeat.pid", str(folder / "celerybeat.pid")),
        ]
    return []


def local_command(service: str, command: list[str], *, port: int, folder: Path) -> list[str]:
    changed = list(command)
    for old, new in command_changes(service, port=port, folder=folder):
        hits = [i for i, part in enumerate(changed) if old in part]
        if not hits:
            raise ValueError(f"{service}: {old!r} is not in its compose command {command}")
        for i in hits:
            changed[i] = changed[i].replace(old, new)
    if service in WORKER_QUEUES:
        changed += ["--hostname", f"{service}@%h"]
    return changed


@dataclass
class Backing:
    """Where the stand-ins for the backing services answer."""

    database_url: str
    broker_url: str
    s3_env: dict[str, str]


@dataclass
class Topology:
    """The app services of docker-compose.yml as processes on this host."""

    folder: Path
    backing: Backing
    secret_key: str
    port: int
    models_dir: Path = field(init=False)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self):
        self.models_dir = self.folder / "models"
        self.spec = compose()

    def environment(self, service: str) -> dict[str, str]:
        """The service's compose environment, with ``LOCAL_ENV_KEYS`` pointing here, plus
        ``HOST_ENV_KEYS``."""
        declared = self.spec["services"][service]["environment"]
        local = {
            "DJANGO_SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.backing.database_url,
            "CELERY_BROKER_URL": self.backing.broker_url,
            **{k: v for k, v in self.backing.s3_env.items() if k in LOCAL_ENV_KEYS},
            "STICKERLOOP_MODELS_DIR": str(self.models_dir),
            "STICKERLOOP_TRAINING_DIR": str(self.models_dir / "training"),
        }
        env = {
            key: local[key] if key in LOCAL_ENV_KEYS else resolve(value, {})
            for key, value in declared.items()
        }
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "STICKERLOOP_VAR_DIR": str(self.folder / "var"),
                "AWS_DEFAULT_REGION": self.backing.s3_env["AWS_DEFAULT_REGION"],
                "STICKERLOOP_TRAINING_DEVICE": "cpu",
                "OMP_NUM_THREADS": "1",
                "DATABASE_CONN_MAX_AGE": "0",
                # `python`, `gunicorn` and `celery` in the commands are this environment's.
                "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def command(self, service: str) -> list[str]:
        return local_command(
            service, self.spec["services"][service]["command"], port=self.port, folder=self.folder
        )

    def log_path(self, service: str) -> Path:
        return self.folder / f"{service}.log"

    def log(self, service: str) -> str:
        return self.log_path(service).read_text(errors="replace")

    def run_once(self, service: str, *, timeout: float) -> None:
        """Run a one-shot service to its end; raise with its log unless it exits 0."""
        with self.log_path(service).open("wb") as out:
            result = subprocess.run(
                self.command(service),
                cwd=ROOT,
                env=self.environment(service),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if result.returncode != 0:
            raise AssertionError(f"{service} exited {result.returncode}:\n{self.log(service)}")

    def start(self, service: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            self.command(service),
            cwd=ROOT,
            env=self.environment(service),
            stdout=self.log_path(service).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[service] = proc
        return proc

    def kill(self, service: str) -> None:
        """SIGKILL the service's whole process group: no chance to ack, requeue or clean up."""
        proc = self.processes[service]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every process (compose's stop), then SIGKILL what is left after 20 s."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
