"""The docker-compose topology as processes (tests/e2e/topology.py): gunicorn, a ``default``, a
``gpu`` and a ``train`` worker, beat, PostgreSQL, Redis as broker and result store, and moto's
S3 server for media, started as compose starts them. One small loop runs through the HTTP API
only: a sticker batch, a campaign, judgments, consensus, a dataset version, an export written
to the bucket, a training job whose model is read back from the bucket, and a generation with
the new model."""

import hashlib
import secrets
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import global_settings
from django.conf import settings as django_settings
from django.db import connection

from bench._common import free_port
from stickerloop.storage import STAGING_SUFFIX
from tests import factories
from tests.conftest import wait_for
from tests.e2e import topology

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RATERS = 2
PROMPTS = ["a red apple", "a blue bird", "a green frog"]


class Api:
    """One user's token session on the live site."""

    def __init__(self, base: str, username: str):
        self.base = base
        self.session = requests.Session()
        response = self.session.post(
            f"{base}/api/auth/token/",
            json={"username": username, "password": factories.PASSWORD},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(f"{self.base}{path}", timeout=60, **kwargs)

    def post(self, path: str, body: dict | None = None, *, expect: int) -> dict:
        response = self.session.post(f"{self.base}{path}", json=body or {}, timeout=60)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json()


@pytest.fixture
def compose_up(tmp_path, moto_server, broker_clean):
    """Bring the topology up as ``docker compose up`` does: the bucket, init, web (ready once
    /readyz answers 200), then the three workers and beat (each ready once it says so)."""
    factories.ensure_roles()
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)  # compose's `bucket` step
    db = connection.settings_dict
    local = topology.Topology(
        folder=tmp_path,
        backing=topology.Backing(
            database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            broker_url=django_settings.CELERY_BROKER_URL,
            s3_env=moto_server.env(bucket),
        ),
        secret_key=secrets.token_urlsafe(50),
        port=free_port(),
    )
    started = time.monotonic()
    try:
        local.run_once("init", timeout=180)
        print(f"\ncompose topology: init in {time.monotonic() - started:.1f} s")
        local.start("web")
        for service in ("worker-default", "worker-gpu", "worker-train", "beat"):
            local.start(service)
        base = f"http://127.0.0.1:{local.port}"

        def ready() -> bool:
            for service, proc in local.processes.items():
                assert proc.poll() is None, f"{service} exited:\n{local.log(service)}"
            try:
                # The first request waits for a gunicorn worker to import the project.
                return requests.get(f"{base}/readyz", timeout=30).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False

        wait_for(ready, timeout=120, interval=0.5, message=local.log("web"))
        for service in topology.WORKER_QUEUES:
            wait_for(
                lambda s=service: " ready." in local.log(s),
                timeout=120,
                interval=0.5,
                message=f"{service}:\n{local.log(service)}",
            )
        yield local, base, bucket, started
    finally:
        local.stop()


def _until(api: Api, path: str, done, *, local, services, timeout: float = 150) -> dict:
    """GET ``path`` until ``done(body)``; on time-out, the services' log tails say why."""
    last: dict = {}

    def check() -> bool:
        nonlocal last
        response = api.get(path)
        assert response.status_code == 200, response.text
        last = response.json()
        return done(last)

    logs = "\n".join(f"--- {s}\n{local.log(s)[-2500:]}" for s in services)
    wait_for(check, timeout=timeout, interval=0.5, message=f"{path}: {last}\n{logs}")
    return last


def test_the_loop_runs_through_the_api_on_the_compose_topology(compose_up, moto_server, settings):
    local, base, bucket, started = compose_up
    # The site checks passwords with the hashers production uses, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    factories.user("cora", ["curator"])
    factories.user("eng", ["ml_engineer"])
    rater_users = [factories.user(f"rater{i}", ["rater"]) for i in range(RATERS)]
    curator, engineer = Api(base, "cora"), Api(base, "eng")
    raters = [Api(base, u.username) for u in rater_users]
    loop_started = time.monotonic()
    marks = [("up", loop_started)]

    # The default models, installed and registered by init, live in the models volume.
    [base_model] = [
        m
        for m in curator.get("/api/model-versions/").json()["results"]
        if m["name"] == "sticker-base"
    ]
    assert base_model["uri"].startswith(str(local.models_dir))

    # A sticker batch on the gpu worker; the candidates go to the bucket.
    prompt_set = curator.post(
        "/api/prompt-sets/import/",
        {"name": "e2e", "content": "\n".join(PROMPTS)},
        expect=201,
    )["prompt_set"]
    batch = curator.post(
        "/api/batches/create/",
        {
            "kind": "sticker",
            "prompt_set": prompt_set["id"],
            "model_versions": [base_model["id"]],
            "seeds": [1, 2],
            "params": {"num_inference_steps": 2},
        },
        expect=201,
    )
    batch = _until(
        curator,
        f"/api/batches/{batch['id']}/",
        lambda b: b["status"] in ("succeeded", "failed", "partial"),
        local=local,
        services=["worker-default", "worker-gpu"],
    )
    assert (batch["status"], batch["done_count"]) == ("succeeded", 6), batch
    candidates = curator.get(f"/api/candidates/?batch={batch['id']}").json()["results"]
    assert len(candidates) == 6
    keys = moto_server.keys(bucket)
    assert len([k for k in keys if k.startswith(f"candidates/{batch['id']}/")]) == 6
    marks.append(("batch", time.monotonic()))

    # A campaign the raters work over the API, two judgments per item.
    campaign = curator.post(
        "/api/campaigns/create/",
        {
            "name": "e2e alignment",
            "kind": "single",
            "preset": "alignment",
            "overlap": RATERS,
            "raters": [u.pk for u in rater_users],
        },
        expect=201,
    )
    # Its items added by the default worker, as a selection too large for a request would be.
    load = curator.post(
        f"/api/campaigns/{campaign['id']}/items/load/",
        {"batches": [batch["id"]], "seed": 1},
        expect=202,
    )
    load = _until(
        curator,
        f"/api/campaigns/{campaign['id']}/items/loads/{load['id']}/",
        lambda x: x["status"] in ("succeeded", "failed"),
        local=local,
        services=["worker-default"],
    )
    assert (load["status"], load["items_created"]) == ("succeeded", 6), load
    curator.post(f"/api/campaigns/{campaign['id']}/start/", expect=200)
    for rater in raters:
        items = rater.post(f"/api/campaigns/{campaign['id']}/rate/", {"fetch": 1}, expect=200)[
            "items"
        ]
        while items:
            item = items[0]
            items = rater.post(
                f"/api/campaigns/{campaign['id']}/rate/",
                {
                    "fetch": 1,
                    "submit": {
                        "item": item["id"],
                        "client_id": str(uuid.uuid4()),
                        "seconds_on_item": 2.0,
                        "answers": {"aligned": True},
                    },
                },
                expect=200,
            )["items"]
    progress = curator.get(f"/api/campaigns/{campaign['id']}/progress/").json()
    assert progress["judgments"] == 6 * RATERS, progress
    marks.append(("judgments", time.monotonic()))

    # Consensus, computed on the default worker.
    run = curator.post(f"/api/quality/campaigns/{campaign['id']}/compute/", expect=202)
    run = _until(
        curator,
        f"/api/quality/runs/{run['id']}/",
        lambda r: r["status"] in ("succeeded", "failed"),
        local=local,
        services=["worker-default"],
    )
    assert run["status"] == "succeeded", run
    consensus = curator.get(f"/api/quality/campaigns/{campaign['id']}/consensus/").json()
    assert consensus, consensus
    marks.append(("consensus", time.monotonic()))

    # A dataset version of the aligned stickers, published.
    rule = curator.post(
        "/api/dataset-rules/create/",
        {
            "name": "e2e aligned",
            "purpose": "alignment",
            "campaigns": [campaign["id"]],
            "conditions": [{"question": "aligned", "labels": [True]}],
        },
        expect=201,
    )
    version = curator.post(f"/api/dataset-rules/{rule['id']}/build/", expect=201)["version"]
    assert version["entry_count"] == 6
    curator.post(f"/api/dataset-versions/{version['id']}/publish/", expect=200)
    marks.append(("dataset version", time.monotonic()))

    # Its export, written to the bucket by the default worker, marker last.
    export = curator.post(
        f"/api/dataset-versions/{version['id']}/exports/", {"format": "imagefolder"}, expect=201
    )
    export = _until(
        curator,
        f"/api/dataset-exports/{export['id']}/",
        lambda e: e["status"] in ("succeeded", "failed"),
        local=local,
        services=["worker-default"],
    )
    assert export["status"] == "succeeded", export
    prefix = export["storage_prefix"]
    assert [k for k in moto_server.keys(bucket) if k.startswith(prefix)] == [
        f"{prefix}_COMPLETE.json",
        f"{prefix}imagefolder.tar",
    ]
    download = curator.get(f"/api/dataset-exports/{export['id']}/download/", allow_redirects=False)
    assert download.status_code == 302
    assert urlsplit(download.headers["Location"]).netloc == urlsplit(moto_server.url).netloc
    fetched = requests.get(download.headers["Location"], timeout=30)
    assert hashlib.sha256(fetched.content).hexdigest() == export["files"][0]["sha256"]
    marks.append(("export", time.monotonic()))

    # A training job on the train worker: it reads the export from the bucket and writes its
    # model there.
    job = engineer.post(
        "/api/training-jobs/create/",
        {
            "recipe": "finetune",
            "base_model_version": base_model["id"],
            "params": {
                "max_train_steps": 2,
                "train_batch_size": 2,
                "method": "lora",
                "checkpointing_steps": 100,
            },
            "datasets": [{"role": "train", "dataset_version": version["id"]}],
            "evaluate": False,
        },
        expect=201,
    )
    job = _until(
        engineer,
        f"/api/training-jobs/{job['id']}/",
        lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
        local=local,
        services=["worker-train"],
    )
    assert job["status"] == "succeeded", (job["error"], job.get("log_tail", "")[-2000:])
    model = engineer.get(f"/api/model-versions/{job['output_model_version']}/").json()
    model_prefix = f"models/training-job-{job['id']}/"
    assert model["uri"] == f"s3://{bucket}/{model_prefix}"
    model_keys = [k for k in moto_server.keys(bucket) if k.startswith(model_prefix)]
    assert f"{model_prefix}_COMPLETE.json" in model_keys
    assert f"{model_prefix}model_index.json" in model_keys
    assert not [k for k in model_keys if "/checkpoint-" in k or k.endswith(STAGING_SUFFIX)]
    marks.append(("training", time.monotonic()))

    # A generation with the new model: the gpu worker copies it from the bucket.
    new_batch = curator.post(
        "/api/batches/create/",
        {
            "kind": "sticker",
            "prompt_set": prompt_set["id"],
            "model_versions": [model["id"]],
            "seeds": [3],
            "params": {"num_inference_steps": 2},
        },
        expect=201,
    )
    new_batch = _until(
        curator,
        f"/api/batches/{new_batch['id']}/",
        lambda b: b["status"] in ("succeeded", "failed", "partial"),
        local=local,
        services=["worker-gpu"],
    )
    assert (new_batch["status"], new_batch["done_count"]) == ("succeeded", 3), new_batch
    marks.append(("generation", time.monotonic()))
    # Its copy (weights included) on the gpu worker's side of the models volume.
    copies = [p.name for p in (local.models_dir / ".bucket-cache").iterdir()]
    [full] = [n for n in copies if not n.endswith("-configs")]
    assert full.startswith(f"models--training-job-{job['id']}-")
    # Nothing is left staged in the bucket.
    assert not [k for k in moto_server.keys(bucket) if k.endswith(STAGING_SUFFIX)]
    steps = ", ".join(f"{n} {t - marks[i][1]:.1f} s" for i, (n, t) in enumerate(marks[1:]))
    print(
        f"\ncompose topology: up in {loop_started - started:.1f} s; {steps}; "
        f"{time.monotonic() - started:.1f} s in all"
    )
