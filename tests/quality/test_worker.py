"""The aggregation task on a real Celery worker: on demand through the API, and periodically."""

import pytest
from django.urls import reverse

from annotation.quality.models import AggregationRun, QuestionResult
from annotation.quality.services.runs import aggregation_run_request, periodic_runs_request
from tests import factories as f
from tests.conftest import run_at_once, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_compute_on_demand_and_periodically_on_a_worker(api, curator, start_worker):
    # given a judged campaign and a worker on the default queue
    camp = f.campaign(questions=[{"key": "ok", "type": "binary", "label": "OK?"}], overlap=2)
    items = f.items(camp, 3)
    raters = f.raters(2, campaign=camp)
    for item in items:
        for rater in raters:
            f.judge(item, rater, {"ok": True})
    start_worker("default")

    # when a curator asks for the results
    response = api(curator).post(
        reverse("api-quality-compute", args=[camp.pk]),
        {"methods": ["majority", "dawid_skene"]},
        format="json",
    )
    assert response.status_code == 202

    # then the worker computes and stores them
    run = wait_for(
        lambda: AggregationRun.objects.filter(
            pk=response.json()["id"], finished_at__isnull=False
        ).first(),
        timeout=90,
        message="the run did not finish",
    )
    assert (run.status, run.error) == ("succeeded", "")
    assert run.summary["questions"]["ok"]["judgments"] == 6
    assert set(QuestionResult.objects.filter(campaign=camp).values_list("method", flat=True)) == {
        "majority",
        "dawid_skene",
    }

    # and the periodic entry queues a run only once there are new judgments
    assert periodic_runs_request() == []
    f.judge(f.items(camp, 1)[0], raters[0], {"ok": False})
    (run_id,) = periodic_runs_request()
    run = wait_for(
        lambda: AggregationRun.objects.filter(pk=run_id, finished_at__isnull=False).first(),
        timeout=90,
        message="the periodic run did not finish",
    )
    assert (run.status, run.trigger) == ("succeeded", "periodic"), run.error
    assert QuestionResult.objects.get(campaign=camp, method="majority").n_items == 4


def test_concurrent_requests_queue_one_run(broker_clean):
    """Eight curators press compute at once: one run is queued, the others join it."""
    camp = f.campaign(questions=[{"key": "ok", "type": "binary", "label": "OK?"}])
    ids, errors = run_at_once([lambda: aggregation_run_request(campaign=camp).pk] * 8, timeout=30)

    assert errors == []
    assert len(set(ids)) == 1
    assert AggregationRun.objects.filter(campaign=camp).count() == 1
