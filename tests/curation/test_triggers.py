"""Publishing a version whose rule carries a training trigger creates the training job by a
direct call, in the publishing transaction; a refused job fails the trigger, not the publish."""

import pytest

from tests import factories as f
from training_bridge.jobs.triggers import dataset_version_publish_and_train, training_trigger_fire
from training_bridge.models import AuditEvent, TrainingTrigger
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = pytest.mark.django_db

T = {"aligned": True, "quality": 4}


@pytest.fixture
def rule_with_trigger(make, curator, models):
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(2)]
    for prompt in ["a cat", "a dog", "a frog", "an owl"]:
        item = make.item(campaign, [make.sticker(prompt)])
        for rater in raters:
            make.judge(item, rater, T)

    def rule(trigger):
        return f.aligned_rule(
            campaign,
            curator,
            name=f"align {len(trigger)}",
            validation_fraction=0.25,
            training_trigger=trigger,
        )

    return rule


def finetune(models) -> dict:
    return {
        "recipe": "finetune",
        "base_model_version_id": models["sticker-base"].pk,
        "params": {"max_train_steps": 2},
        "role": "train",
        "evaluate": False,
    }


def test_publish_creates_the_training_job(api, curator, rule_with_trigger, models):
    from training_bridge.jobs.models import TrainingJob

    rule = rule_with_trigger(finetune(models))
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    response = api(curator).post(f"/api/dataset-versions/{version.pk}/publish/")
    assert response.status_code == 200
    trigger = response.json()["training_trigger"]
    job = TrainingJob.objects.get()
    assert (trigger["status"], trigger["job_id"], trigger["error"]) == ("fired", job.pk, "")
    assert job.recipe == "finetune" and job.requested_by == curator
    assert list(job.dataset_links.values_list("dataset_version_id", "role", "manifest_sha256")) == [
        (version.pk, "train", version.manifest_sha256)
    ]
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "build",
        "publish",
        "trigger_fired",
    ]


def test_publish_creates_the_job_by_a_direct_call_in_its_transaction(
    curator, rule_with_trigger, models, django_capture_on_commit_callbacks
):
    from training_bridge.jobs.models import TrainingJob

    rule = rule_with_trigger(finetune(models))
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        published = dataset_version_publish_and_train(version=version, published_by=curator)
    # then: the job exists before the publish commits; the only things left for after the
    # commit are the announcement of the publish (stickerloop.events) and the job's own run on
    # the train queue
    job = TrainingJob.objects.get()
    trigger = TrainingTrigger.objects.get(version=version)
    assert (published.status, trigger.status, trigger.job_id, trigger.error) == (
        "published",
        "fired",
        job.pk,
        "",
    )
    assert job.trigger == {"source": "dataset_publish", "dataset_version_id": version.pk}
    assert len(callbacks) == 2


def test_curation_publish_alone_starts_no_training(curator, rule_with_trigger, models):
    from training_bridge.jobs.models import TrainingJob

    rule = rule_with_trigger(finetune(models))
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    assert TrainingTrigger.objects.count() == 0
    assert TrainingJob.objects.count() == 0
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "build",
        "publish",
    ]


def test_a_refused_job_keeps_the_publish_and_records_why(api, curator, rule_with_trigger, models):
    from training_bridge.jobs.models import TrainingJob

    trigger = {**finetune(models), "recipe": "style_tailoring", "role": "content"}
    rule = rule_with_trigger(trigger)
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    published = api(curator).post(f"/api/dataset-versions/{version.pk}/publish/").json()
    assert published["status"] == "published"
    assert published["training_trigger"]["status"] == "failed"
    # the training side's own message, keyed by its field
    assert published["training_trigger"]["error"].startswith("datasets: ")
    assert TrainingJob.objects.count() == 0
    # firing again without a fix fails the same way; a fired trigger cannot fire twice
    again = api(curator).post(f"/api/training-triggers/{published['training_trigger']['id']}/fire/")
    assert again.status_code == 200 and again.json()["status"] == "failed"


def test_trigger_input_is_checked_when_the_rule_is_saved(api, curator, make, models):
    campaign = make.campaign(name="align")
    response = api(curator).post(
        "/api/dataset-rules/create/",
        {
            "name": "r",
            "purpose": "alignment",
            "campaigns": [campaign.pk],
            "conditions": [{"question": "aligned", "labels": [True]}],
            "training_trigger": {
                "recipe": "finetune",
                "role": "teacher_selection",
                "base_model_version_id": models["anim-teacher-a"].pk,
            },
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "training_trigger.base_model_version_id": [
            "Model version 'anim-teacher-a' is an animation model; this rule makes image datasets."
        ],
        "training_trigger.role": [
            "Role 'teacher_selection' does not take alignment datasets (it takes "
            "teacher_selection)."
        ],
    }


def test_the_migration_turns_a_pending_trigger_into_a_failed_one_to_fire_again(
    curator, rule_with_trigger, models
):
    import importlib

    from django.apps import apps

    from training_bridge.jobs.models import TrainingJob

    migration = importlib.import_module("training_bridge.migrations.0003_trigger_fires_on_publish")
    rule = rule_with_trigger(finetune(models))
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    # given: a trigger left pending by the old code (published while jobs were absent)
    pending = TrainingTrigger.objects.create(
        version=version, trigger=finetune(models), status="pending", requested_by=curator
    )
    # when
    migration.pending_to_failed(apps, None)
    # then
    pending.refresh_from_db()
    assert (pending.status, pending.error, pending.job_id) == (
        "failed",
        "Published while the training service was absent; fire the trigger again to create "
        "the job.",
        None,
    )
    # and firing it again creates the job
    fired = training_trigger_fire(trigger=pending)
    assert (fired.status, fired.job_id) == ("fired", TrainingJob.objects.get().pk)
