"""The hook point (``stickerloop.events``) and the services that announce through it: each
state change the webhooks relay is announced once its transaction commits, by the service that
makes it, with the object and its facts; a rollback announces nothing; and the webhooks listener
only puts one message on the broker."""

import base64
import json

import pytest
from django.db import transaction

from annotation.quality.models import AggregationRun
from annotation.quality.services.membership import rater_pause
from annotation.quality.services.runs import aggregation_run_execute
from annotation.services.campaigns import campaign_close
from annotation.services.item_loads import item_load_execute, item_load_request
from generation.models import GenerationBatch, GenerationChunk
from generation.services.batches import generation_batch_cancel
from generation.services.chunks import generation_chunk_run
from stickerloop import events
from tests import factories as f
from training_bridge.exports.create import dataset_export_create
from training_bridge.exports.run import dataset_export_run
from training_bridge.jobs.lifecycle import training_job_cancel
from training_bridge.jobs.models import TrainingJob
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report
from training_bridge.versions import dataset_version_publish
from webhooks.payload import object_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced():
    """What is announced, as a listener beside the webhooks relay sees it."""
    seen: list[events.Published] = []
    events.subscribe(seen.append)
    yield seen
    events.unsubscribe(seen.append)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a call in a transaction that commits (its on-commit callbacks run)."""

    def run(call):
        with django_capture_on_commit_callbacks(execute=True):
            return call()

    return run


def _facts(seen) -> list[tuple]:
    return [(e.name, e.object_type, e.object_id, e.data) for e in seen]


def test_an_announcement_waits_for_the_commit_and_a_rollback_drops_it(announced, committed):
    def rolled_back():
        with transaction.atomic():
            events.publish(events.EXPORT_READY, object_type="dataset_export", object_id=1)
            raise RuntimeError("the change failed")

    def kept():
        with transaction.atomic():
            events.publish(events.EXPORT_READY, object_type="dataset_export", object_id=2)
            assert announced == []  # not before the commit

    with pytest.raises(RuntimeError):
        committed(rolled_back)
    committed(kept)

    assert _facts(announced) == [("export.ready", "dataset_export", 2, {})]
    assert announced[0].id.version == 4


def test_an_unknown_name_is_refused_at_the_call_site():
    with pytest.raises(ValueError, match="Unknown event name 'export.readyy'."):
        events.publish("export.readyy", object_type="dataset_export", object_id=1)


def test_a_failing_listener_fails_neither_the_caller_nor_the_others(announced, committed, caplog):
    def broken(event):
        raise ConnectionError("broker down")

    events.subscribe(broken)
    try:
        committed(
            lambda: events.publish(events.EXPORT_READY, object_type="dataset_export", object_id=3)
        )
    finally:
        events.unsubscribe(broken)

    assert _facts(announced) == [("export.ready", "dataset_export", 3, {})]
    assert "ConnectionError: broker down" in caplog.text


def test_the_webhooks_listener_queues_one_message_and_sends_nothing(committed, broker_clean):
    committed(
        lambda: events.publish(
            events.BATCH_FAILED, object_type="generation_batch", object_id=5, data={"x": 1}
        )
    )

    [raw] = broker_clean.lrange("default", 0, -1)
    message = json.loads(raw)
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert message["headers"]["task"] == "webhooks.record_event"
    assert args[1:4] == ["batch.failed", "generation_batch", 5]
    assert (args[5], kwargs) == ({"x": 1}, {})


def test_campaign_close_announces_campaign_completed(announced, committed):
    campaign = f.running_campaign(raters=[], n_items=1)

    committed(lambda: campaign_close(campaign=campaign))

    assert _facts(announced) == [("campaign.completed", "campaign", campaign.pk, {})]


def test_a_cancelled_batch_is_finished_and_a_batch_whose_chunks_all_failed_is_failed(
    announced, committed
):
    prompt_set = f.prompt_set(["a cat"])
    missing = f.model_version("no-folder")  # its folder does not exist: the chunk fails
    cancelled = GenerationBatch.objects.create(kind="sticker", prompt_set=prompt_set, total=1)
    failing = GenerationBatch.objects.create(
        kind="sticker", prompt_set=prompt_set, seeds=[1], total=1, chunks_total=1
    )
    chunk = GenerationChunk.objects.create(
        batch=failing,
        index=0,
        model_version=missing,
        items=[{"prompt": prompt_set.prompts.get().pk, "seed": 1}],
    )

    committed(lambda: generation_batch_cancel(batch=cancelled))
    committed(lambda: generation_chunk_run(chunk_id=chunk.pk))

    assert _facts(announced) == [
        (
            "batch.finished",
            "generation_batch",
            cancelled.pk,
            {"status": "cancelled", "done_count": 0, "failed_count": 0},
        ),
        (
            "batch.failed",
            "generation_batch",
            failing.pk,
            {"status": "failed", "done_count": 0, "failed_count": 1},
        ),
    ]


def test_publishing_a_version_and_finishing_its_export_are_announced(announced, committed, curator):
    version = f.dataset_version(
        {"sticker-base": f.model_version("sticker-base")}, purpose="alignment", status="draft"
    )

    committed(lambda: dataset_version_publish(version=version, published_by=curator))
    export = committed(
        lambda: dataset_export_create(
            version=version, export_format="parquet", requested_by=curator
        )
    )
    committed(lambda: dataset_export_run(export_id=export.pk))

    assert _facts(announced) == [
        (
            "dataset_version.published",
            "dataset_version",
            version.pk,
            {"rule": version.rule_id, "number": 1},
        ),
        (
            "export.ready",
            "dataset_export",
            export.pk,
            {"dataset_version": version.pk, "format": "parquet"},
        ),
    ]


def test_a_cancelled_and_a_failed_training_job_are_announced(announced, committed, engineer):
    base = f.model_version("job-base")
    cancelled, failing = (
        TrainingJob.objects.create(
            recipe="finetune", base_model_version=base, params={}, total_steps=4
        )
        for _ in range(2)
    )

    committed(lambda: training_job_cancel(job=cancelled, cancelled_by=engineer))
    committed(
        lambda: training_job_progress_report(
            job=failing, events=[{"event": "error", "message": "CUDA out of memory"}]
        )
    )

    assert _facts(announced) == [
        (
            "training_job.cancelled",
            "training_job",
            cancelled.pk,
            {"attempt": 1, "output_model_version": None},
        ),
        (
            "training_job.failed",
            "training_job",
            failing.pk,
            {"attempt": 1, "output_model_version": None},
        ),
    ]


def test_a_job_that_registers_its_output_is_announced_succeeded(
    announced, committed, models, settings, tmp_path
):
    settings.TRAINING_DIR = tmp_path / "training"
    job = TrainingJob.objects.create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        params={},
        total_steps=2,
        status="running",
        evaluate=False,
    )
    f.fake_finished_output(job)

    version = committed(lambda: training_job_register_output(job=job))

    assert _facts(announced) == [
        (
            "training_job.succeeded",
            "training_job",
            job.pk,
            {"attempt": job.attempt, "output_model_version": version.pk},
        )
    ]


def test_pausing_a_rater_and_computing_results_are_announced(announced, committed, curator):
    member = f.rater("paused-one")
    campaign = f.running_campaign(raters=[member], n_items=2)
    run = AggregationRun.objects.create(
        campaign=campaign, trigger="on_demand", methods=["majority"]
    )

    event = committed(
        lambda: rater_pause(campaign=campaign, rater_id=member.pk, reason="too fast", actor=curator)
    )
    committed(lambda: aggregation_run_execute(run_id=run.pk))

    assert _facts(announced) == [
        (
            "rater.paused",
            "campaign_membership",
            event.membership_id,
            {"campaign": campaign.pk, "rater": member.pk, "cause": "manual", "reason": "too fast"},
        ),
        ("campaign.results_computed", "campaign", campaign.pk, {"aggregation_run": run.pk}),
    ]


def test_how_an_item_load_ended_is_announced_with_its_campaign(announced, committed, settings):
    settings.SITE_URL = "https://stickers.example.org"
    version = f.model_version("loaded")
    f.candidates(2, model_version=version)
    campaign = f.running_campaign(raters=[], n_items=1)
    added = item_load_request(campaign=campaign, model_versions=[version.pk])
    refused = item_load_request(campaign=campaign, model_versions=[version.pk])
    announced.clear()

    committed(lambda: item_load_execute(load_id=added.pk))
    committed(lambda: item_load_execute(load_id=refused.pk))

    assert _facts(announced) == [
        (
            "item_load.succeeded",
            "item_load",
            added.pk,
            {"campaign": campaign.pk, "items_created": 2},
        ),
        (
            "item_load.failed",
            "item_load",
            refused.pk,
            {
                "campaign": campaign.pk,
                "error": "The selection makes no new items. "
                "Every candidate it groups is in the campaign already.",
            },
        ),
    ]
    assert object_url("item_load", added.pk, {"campaign": campaign.pk}) == (
        f"https://stickers.example.org/api/campaigns/{campaign.pk}/items/loads/{added.pk}/"
    )
