"""/metrics: behind a bearer token; requests counted across gunicorn's workers; queue depths,
task figures and the database's gauges read at scrape time, with exact values."""

import uuid
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from annotation.models import Lease
from annotation.services.rating import item_next_for_rater, item_skip, judgment_submit
from generation.models import GenerationBatch
from stickerloop.celery import app
from stickerloop.services import token_issue
from tests import factories as f
from tests.conftest import wait_for
from training_bridge.jobs.models import TrainingJob
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion

TOKEN = "metrics-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def samples(body: str) -> dict[str, float]:
    """``{"name{labels}": value}`` for every sample line of a text exposition."""
    found = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


# The token ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_off_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers=BEARER).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Token {TOKEN}", f"Basic {TOKEN}", "Bearer"]
)
def test_metrics_refuse_a_scraper_without_the_token(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert (response.status_code, response.content) == (403, b"A bearer token is needed.")


@pytest.mark.django_db
def test_metrics_answer_the_token_in_prometheus_text(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert samples(response.content.decode())['stickerloop_leases{state="active"}'] == 0.0


# Queue depths -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_lengths_are_read_from_the_broker(client, settings, broker_clean):
    settings.METRICS_TOKEN = TOKEN
    # given: messages waiting, no worker to take them
    app.send_task("annotation.expire_leases")
    app.send_task("annotation.expire_leases", priority=5)
    app.send_task("generation.run_chunk", args=[0])
    # then
    found = samples(client.get("/metrics", headers=BEARER).content.decode())
    assert {k: v for k, v in found.items() if k.startswith("stickerloop_celery_queue_length")} == {
        'stickerloop_celery_queue_length{queue="default"}': 2.0,
        'stickerloop_celery_queue_length{queue="gpu"}': 1.0,
        'stickerloop_celery_queue_length{queue="train"}': 0.0,
    }
    assert found['stickerloop_metrics_source_up{source="broker"}'] == 1.0


@pytest.mark.django_db
def test_queue_lengths_count_the_filesystem_brokers_files(client, settings, tmp_path):
    settings.METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    for name in ("1_a.default.msg", "2_b.default.msg", "3_c.train.msg", "4_d.other.msg"):
        (tmp_path / name).write_bytes(b"{}")
    (tmp_path / "processed").mkdir()
    found = samples(client.get("/metrics", headers=BEARER).content.decode())
    assert {k: v for k, v in found.items() if k.startswith("stickerloop_celery_queue_length")} == {
        'stickerloop_celery_queue_length{queue="default"}': 2.0,
        'stickerloop_celery_queue_length{queue="gpu"}': 0.0,
        'stickerloop_celery_queue_length{queue="train"}': 1.0,
    }


@pytest.mark.django_db
def test_a_source_that_cannot_be_read_is_reported_down(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/metrics", headers=BEARER)
    found = samples(response.content.decode())
    assert response.status_code == 200
    assert found['stickerloop_metrics_source_up{source="broker"}'] == 0.0
    assert found['stickerloop_metrics_source_up{source="database"}'] == 1.0
    assert not any(k.startswith("stickerloop_celery_queue_length") for k in found)


# Over HTTP, under gunicorn ---------------------------------------------------------------------


def _work_in_the_database(models) -> None:
    """Judgments and leases through the rating services; batches, exports and jobs as rows."""
    raters = [f.rater("metrics-r1"), f.rater("metrics-r2")]
    campaign = f.running_campaign(raters=raters, n_items=4, overlap=2)
    first, second, third = item_next_for_rater(campaign=campaign, rater=raters[0], count=3)
    for item in (first, second):
        judgment_submit(
            item=item,
            rater=raters[0],
            answers={"aligned": True},
            client_id=uuid.uuid4(),
            seconds_on_item=2.0,
        )
    item_skip(item=third, rater=raters[0], reason="unclear", client_id=uuid.uuid4())
    # r2 holds two leases, one of them past its expiry and not yet swept
    held = item_next_for_rater(campaign=campaign, rater=raters[1], count=2)
    Lease.objects.filter(rater=raters[1], item=held[0]).update(
        expires_at=timezone.now() - timedelta(minutes=5)
    )

    for status, total, done, failed in (
        ("running", 10, 4, 1),
        ("queued", 6, 0, 0),
        ("succeeded", 5, 5, 0),
    ):
        GenerationBatch.objects.create(
            kind="sticker",
            seeds=[1],
            status=status,
            total=total,
            done_count=done,
            failed_count=failed,
        )
    rule = DatasetRule.objects.create(name="metrics-rule", purpose="alignment", kind="image")
    version = DatasetVersion.objects.create(
        rule=rule,
        number=1,
        purpose="alignment",
        kind="image",
        status="published",
        rule_snapshot={},
        manifest_sha256="0" * 64,
        entry_count=8,
        train_count=8,
        validation_count=0,
        published_at=timezone.now(),
    )
    DatasetExport.objects.create(
        version=version, format="imagefolder", status="running", total=8, done=3
    )
    DatasetExport.objects.create(version=version, format="parquet", status="failed", total=8)
    TrainingJob.objects.create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        params={},
        status="running",
        total_steps=100,
        step=40,
    )


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_metrics_over_http_add_up_every_worker_and_read_the_database(serve, models, tmp_path):
    # given: work in the database, and the site under gunicorn with two workers
    _work_in_the_database(models)
    db = connection.settings_dict
    site = serve(
        workers=2,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        STICKERLOOP_MEDIA_ROOT=tmp_path,
        STICKERLOOP_METRICS_TOKEN=TOKEN,
    )
    user = f.user("metrics-engineer", ["ml_engineer"])
    api = {"Authorization": f"Token {token_issue(user=user).key}"}
    # when: requests, answered by whichever worker takes them (no keep-alive)
    for _ in range(5):
        assert requests.get(f"{site.url}/api/me/", headers=api, timeout=30).status_code == 200
    # a request a middleware refuses before the view: still counted under its view
    assert requests.get(f"{site.url}/api/me/?q=%00", headers=api, timeout=30).status_code == 400
    assert requests.get(f"{site.url}/no/such/page", timeout=30).status_code == 404
    assert requests.get(f"{site.url}/metrics", timeout=30).status_code == 403
    response = requests.get(f"{site.url}/metrics", headers=BEARER, timeout=30)
    # then
    assert response.status_code == 200
    found = samples(response.text)
    expected = {
        # the requests, across both workers (/healthz: the start-up's wait)
        'stickerloop_http_requests_total{method="GET",status="200",view="api-me"}': 5.0,
        'stickerloop_http_requests_total{method="GET",status="400",view="api-me"}': 1.0,
        'stickerloop_http_requests_total{method="GET",status="404",view="<unmatched>"}': 1.0,
        'stickerloop_http_requests_total{method="GET",status="403",view="metrics"}': 1.0,
        'stickerloop_http_request_duration_seconds_count{view="api-me"}': 6.0,
        'stickerloop_http_request_duration_seconds_bucket{le="+Inf",view="api-me"}': 6.0,
        # the database's figures
        'stickerloop_judgments_per_minute{kind="judged"}': 2.0,
        'stickerloop_judgments_per_minute{kind="skipped"}': 1.0,
        'stickerloop_leases{state="active"}': 1.0,
        'stickerloop_leases{state="expired"}': 1.0,
        'stickerloop_generation_batches{status="queued"}': 1.0,
        'stickerloop_generation_batches{status="running"}': 1.0,
        'stickerloop_generation_batches{status="succeeded"}': 1.0,
        'stickerloop_generation_batches{status="partial"}': 0.0,
        'stickerloop_generation_batches{status="failed"}': 0.0,
        'stickerloop_generation_batches{status="cancelled"}': 0.0,
        'stickerloop_generation_batch_candidates{state="total"}': 16.0,
        'stickerloop_generation_batch_candidates{state="done"}': 4.0,
        'stickerloop_dataset_exports{status="queued"}': 0.0,
        'stickerloop_dataset_exports{status="running"}': 1.0,
        'stickerloop_dataset_exports{status="succeeded"}': 0.0,
        'stickerloop_dataset_exports{status="failed"}': 1.0,
        'stickerloop_dataset_export_entries{state="total"}': 8.0,
        'stickerloop_dataset_export_entries{state="done"}': 3.0,
        'stickerloop_training_jobs{status="queued"}': 0.0,
        'stickerloop_training_jobs{status="running"}': 1.0,
        'stickerloop_training_jobs{status="succeeded"}': 0.0,
        'stickerloop_training_jobs{status="failed"}': 0.0,
        'stickerloop_training_jobs{status="cancelled"}': 0.0,
        'stickerloop_training_job_steps{state="total"}': 100.0,
        'stickerloop_training_job_steps{state="done"}': 40.0,
        'stickerloop_metrics_source_up{source="broker"}': 1.0,
        'stickerloop_metrics_source_up{source="task_store"}': 1.0,
        'stickerloop_metrics_source_up{source="database"}': 1.0,
    }
    assert {k: found.get(k) for k in expected} == expected
    # Labels are URL names, never paths.
    assert not any("no/such/page" in k for k in found)


# Task figures, from a real worker ---------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_task_durations_and_failures_come_from_the_workers(client, settings, start_worker):
    settings.METRICS_TOKEN = TOKEN
    worker = start_worker("default")
    # when: a task that succeeds twice, and one given an argument it does not take
    for _ in range(2):
        app.send_task("annotation.expire_leases")
    app.send_task("annotation.expire_leases", args=["unexpected"])
    # then
    count = 'stickerloop_celery_task_duration_seconds_count{task="annotation.expire_leases"}'

    def scraped():
        found = samples(client.get("/metrics", headers=BEARER).content.decode())
        return found if found.get(count) == 3.0 else None

    found = wait_for(scraped, timeout=60, message=f"three runs scraped\n{worker.log()}")
    assert found['stickerloop_celery_task_failures_total{task="annotation.expire_leases"}'] == 1.0
    assert (
        found[
            'stickerloop_celery_task_duration_seconds_bucket{le="+Inf",task="annotation.expire_leases"}'
        ]
        == 3.0
    )
    assert found['stickerloop_metrics_source_up{source="task_store"}'] == 1.0
