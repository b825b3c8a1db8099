"""The project's wiring: settings fail loudly, docker-compose describes the topology."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# 50 characters, 26 distinct: passes Django's security.W009 rule, which production enforces.
STRONG_KEY = "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWX"


def _import_settings(**env):
    """Import the settings module in a fresh interpreter with ``env``; return (rc, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STICKERLOOP_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import stickerloop.settings"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stderr


def test_production_refuses_the_default_secret_key():
    rc, err = _import_settings(STICKERLOOP_ENV="production", DJANGO_DEBUG="0")
    assert rc != 0
    assert "DJANGO_SECRET_KEY must be set in production" in err


def test_production_refuses_debug():
    rc, err = _import_settings(
        STICKERLOOP_ENV="production", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_DEBUG="1"
    )
    assert rc != 0
    assert "DJANGO_DEBUG must be off in production" in err


def test_production_starts_with_a_secret_and_debug_off():
    rc, err = _import_settings(STICKERLOOP_ENV="production", DJANGO_SECRET_KEY=STRONG_KEY)
    assert rc == 0, err


def test_bad_boolean_is_named():
    rc, err = _import_settings(DJANGO_DEBUG="maybe")
    assert rc != 0
    assert "DJANGO_DEBUG must be a boolean (1/0, true/false), not 'maybe'" in err


ONE_SHOT = ("bucket", "init")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services(compose):
    services = compose["services"]
    assert sorted(services) == [
        "beat",
        "bucket",
        "init",
        "minio",
        "postgres",
        "redis",
        "web",
        "worker-default",
        "worker-gpu",
        "worker-train",
    ]
    # Every long-running service says when it is healthy; the one-shot steps end instead.
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service["healthcheck"]["test"], name
    web_check = services["web"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8000/readyz" in web_check[-1]


def test_compose_one_shot_steps_make_the_bucket_then_migrate_and_install_models(compose):
    services = compose["services"]
    bucket = services["bucket"]["entrypoint"][-1]
    assert "mc mb --ignore-existing local/stickerloop" in bucket
    assert services["bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert compose["x-app"]["environment"]["STICKERLOOP_S3_BUCKET"] == "stickerloop"
    init = services["init"]["command"][-1].split(" && ")
    assert init == [
        "python manage.py migrate --noinput",
        "python manage.py collectstatic --noinput",
        "python manage.py build_default_models",
        "python manage.py preflight",
    ]
    assert services["init"]["depends_on"]["bucket"] == {
        "condition": "service_completed_successfully"
    }
    # Long-running processes start after it, and check their parts before serving.
    for name in ("web", "worker-default", "worker-gpu", "worker-train", "beat"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["web"]["command"][-1].startswith("python manage.py preflight && gunicorn ")


def test_compose_worker_commands(compose):
    services = compose["services"]
    assert services["worker-default"]["command"][:6] == [
        "celery",
        "-A",
        "stickerloop",
        "worker",
        "-Q",
        "default",
    ]
    gpu = services["worker-gpu"]["command"]
    assert gpu[5] == "gpu"
    assert gpu[gpu.index("--concurrency") + 1] == "1"
    assert gpu[gpu.index("--prefetch-multiplier") + 1] == "1"
    assert services["worker-train"]["command"][5] == "train"
    [device] = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "gunicorn stickerloop.wsgi:application" in services["web"]["command"][-1]
    assert services["beat"]["command"][:4] == ["celery", "-A", "stickerloop", "beat"]


def test_compose_dependencies(compose):
    services = compose["services"]
    for name in ("web", "worker-default", "worker-gpu", "worker-train", "beat"):
        deps = services[name]["depends_on"]
        for needed in ("postgres", "redis", "minio"):
            assert deps[needed] == {"condition": "service_healthy"}, (name, needed)
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379")
        assert env["STICKERLOOP_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "miniodata", "models"}


def test_compose_config_where_the_plugin_exists():
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("docker compose plugin not installed on this machine")
    env = {**os.environ, "DJANGO_SECRET_KEY": "x", "MINIO_ROOT_PASSWORD": "y"}
    result = subprocess.run(
        [docker, "compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_task_is_routed_to_its_queue():
    from stickerloop.celery import app

    app.loader.import_default_modules()
    ours = sorted(name for name in app.tasks if not name.startswith("celery."))
    routes = {
        name: app.amqp.router.route({}, name, args=(), kwargs={})["queue"].name for name in ours
    }
    assert routes == {
        "annotation.expire_leases": "default",
        "annotation.item_load_run": "default",
        "annotation.sweep_item_loads": "default",
        "experiments.advance": "default",
        "experiments.compute_results": "default",
        "experiments.recompute_periodic": "default",
        "generation.import_prompts": "default",
        "generation.plan_batch": "default",
        "generation.run_chunk": "gpu",
        "generation.sweep_chunks": "default",
        "pipelines.advance": "default",
        "pipelines.on_event": "default",
        "pipelines.sweep": "default",
        "quality.aggregate_campaign": "default",
        "quality.aggregate_periodic": "default",
        "quality.score_gold_judgment": "default",
        "training_bridge.run_exports": "default",
        "training_bridge.run_weak_import": "default",
        "training_bridge.sweep_exports": "default",
        "training_jobs.evaluation_advance": "default",
        "training_jobs.prepare_external": "default",
        "training_jobs.run": "train",
        "training_jobs.sweep": "default",
        "webhooks.deliver": "default",
        "webhooks.record_event": "default",
        "webhooks.sweep": "default",
    }
    assert {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} == {
        "annotation.expire_leases",
        "annotation.sweep_item_loads",
        "quality.aggregate_periodic",
        "experiments.recompute_periodic",
        "generation.sweep_chunks",
        "training_bridge.sweep_exports",
        "training_jobs.sweep",
        "pipelines.sweep",
        "webhooks.sweep",
    }
    for name in ours:
        task = app.tasks[name]
        assert task.acks_late, name
        assert task.time_limit and task.soft_time_limit, name


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_starts_beat_beside_the_worker():
    """Without beat, results are never recomputed and dead workers' work is never requeued."""
    # The default folder, whatever this shell names.
    env = {k: v for k, v in os.environ.items() if k != "STICKERLOOP_VAR_DIR"}
    out = subprocess.run(
        ["make", "-n", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # One line per command: the recipe's continuation lines joined.
    out = " ".join(out.replace("\\\n", " ").split())
    assert ".venv/bin/celery -A stickerloop worker -Q default,gpu,train --pool solo" in out
    assert (
        ".venv/bin/celery -A stickerloop beat --schedule var/celerybeat-schedule --loglevel INFO"
        in out
    )
