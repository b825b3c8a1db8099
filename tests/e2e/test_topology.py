"""docker-compose.yml and the processes the many-process test starts (tests/e2e/topology.py)
cannot drift apart: the same services, the same commands but for the listed local changes, one
worker per queue the tasks use, and the same environment."""

from pathlib import Path

import pytest

from stickerloop.celery import app
from tests.e2e import topology

COMPOSE = topology.compose()
SERVICES = COMPOSE["services"]
APP_IMAGE = "stickerloop:latest"


def _topology(tmp_path) -> topology.Topology:
    return topology.Topology(
        folder=tmp_path,
        backing=topology.Backing(
            database_url="postgres://u@127.0.0.1:5432/db",
            broker_url="redis://127.0.0.1:6379/6",
            s3_env={
                "STICKERLOOP_S3_BUCKET": "b",
                "STICKERLOOP_S3_ENDPOINT_URL": "http://127.0.0.1:9",
                "STICKERLOOP_S3_ACCESS_KEY": "k",
                "STICKERLOOP_S3_SECRET_KEY": "s",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        ),
        secret_key="x" * 50,
        port=8123,
    )


def test_the_test_starts_every_compose_service_and_nothing_else():
    app_services = {name for name, s in SERVICES.items() if s.get("image") == APP_IMAGE}

    assert app_services == set(topology.APP_SERVICES)
    assert set(SERVICES) - app_services == set(topology.BACKING_SERVICES)


def test_commands_are_composes_but_for_the_listed_local_changes(tmp_path):
    local = _topology(tmp_path)

    assert local.command("web") == [
        "sh",
        "-c",
        "python manage.py preflight && gunicorn stickerloop.wsgi:application "
        "--bind 127.0.0.1:8123 --workers 2 --timeout 60",
    ]
    assert local.command("init") == SERVICES["init"]["command"]
    for service in topology.WORKER_QUEUES:
        assert local.command(service) == [
            *SERVICES[service]["command"],
            *("--hostname", f"{service}@%h"),
        ]
    assert local.command("beat") == [
        *("celery", "-A", "stickerloop", "beat", "--loglevel", "INFO"),
        *("--schedule", str(tmp_path / "celerybeat-schedule")),
        *("--pidfile", str(tmp_path / "celerybeat.pid")),
    ]
    assert SERVICES["beat"]["command"] == [
        *("celery", "-A", "stickerloop", "beat", "--loglevel", "INFO"),
        *("--schedule", "/tmp/celerybeat-schedule", "--pidfile", "/tmp/celerybeat.pid"),
    ]


def test_a_compose_command_without_the_text_a_change_replaces_is_refused(tmp_path):
    with pytest.raises(ValueError, match="web: '0.0.0.0:8000' is not in its compose command"):
        topology.local_command(
            "web", ["gunicorn", "--bind", "0.0.0.0:9000"], port=1, folder=Path(tmp_path)
        )


def _queue_of(command: list[str]) -> str:
    return command[command.index("-Q") + 1]


def test_one_worker_per_queue_and_every_task_queue_has_a_worker():
    app.loader.import_default_modules()
    # Where each task goes, as the app's router (CELERY_TASK_ROUTES) sends it.
    task_queues = {
        app.amqp.router.route({}, name)["queue"].name
        for name in app.tasks
        if not name.startswith("celery.")
    }

    queues = {s: _queue_of(SERVICES[s]["command"]) for s in topology.WORKER_QUEUES}

    assert queues == topology.WORKER_QUEUES
    assert task_queues == set(queues.values()) == {"default", "gpu", "train"}
    # The gpu and train workers take one task at a time and reserve no second one.
    for service in ("worker-gpu", "worker-train"):
        command = SERVICES[service]["command"]
        assert command[command.index("--concurrency") + 1] == "1"
        assert command[command.index("--prefetch-multiplier") + 1] == "1"


def test_every_process_gets_composes_environment_with_local_hosts(tmp_path):
    local = _topology(tmp_path)

    for service in topology.APP_SERVICES:
        declared = SERVICES[service]["environment"]
        env = local.environment(service)
        assert set(env) == set(declared) | set(topology.HOST_ENV_KEYS), service
        for key, value in declared.items():
            if key not in topology.LOCAL_ENV_KEYS:
                assert env[key] == topology.resolve(value, {}), (service, key)
        assert (env["DATABASE_URL"], env["CELERY_BROKER_URL"]) == (
            "postgres://u@127.0.0.1:5432/db",
            "redis://127.0.0.1:6379/6",
        )
        assert env["STICKERLOOP_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
        assert env["STICKERLOOP_TRAINING_DIR"] == str(tmp_path / "models" / "training")
    assert set(topology.LOCAL_ENV_KEYS) <= set(SERVICES["web"]["environment"])
    # compose's own values where nothing local stands in
    web = local.environment("web")
    assert (web["STICKERLOOP_ENV"], web["DJANGO_ALLOWED_HOSTS"]) == ("production", "localhost")
    assert web["DJANGO_SECURE_SSL_REDIRECT"] == "0"


def test_resolve_fills_compose_variables_as_docker_compose_does():
    assert topology.resolve("${A:-x}-${B}", {"B": "y"}) == "x-y"
    assert topology.resolve("${A:-x}", {"A": "z"}) == "z"
    with pytest.raises(KeyError, match="C must be set: set C"):
        topology.resolve("${C:?set C}", {})
