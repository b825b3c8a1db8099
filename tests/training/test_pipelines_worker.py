"""A pipeline end to end on a real worker (Celery subprocess, Redis, PostgreSQL): corpus →
base finetune → alignment and style sets → Style Tailoring → evaluation, declared through the
API and advanced by the worker as its jobs train and end, by a publish through the API, and by
its experiment's batches, until it has succeeded."""

import pytest

from tests import factories
from tests.conftest import wait_for
from training_bridge.pipelines.models import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST = {"train_batch_size": 2, "method": "lora", "checkpointing_steps": 100, "max_train_steps": 2}


@pytest.fixture(autouse=True)
def _role_groups(transactional_db):
    """A transactional test empties every table after it, the role groups included."""
    factories.ensure_roles()


def test_a_pipeline_trains_publishes_and_evaluates_through_the_worker(
    start_worker, settings, models, datasets, api, engineer, curator
):
    worker = start_worker(
        queues="default,gpu,train",
        STICKERLOOP_TRAINING_DIR=settings.TRAINING_DIR,
        STICKERLOOP_TRAINING_DEVICE="cpu",
        # One torch thread: two spin against the worker, PostgreSQL and this process.
        OMP_NUM_THREADS=1,
    )
    alignment = datasets["alignment"]
    style = factories.dataset_version(models, purpose="style", status="draft")
    held_out = factories.prompt_set(["a happy corgi"], held_out=True)
    response = api(engineer).post(
        "/api/pipelines/create/",
        {
            "name": "through the worker",
            "stages": [
                {
                    "name": "corpus",
                    "kind": "dataset",
                    "rule": alignment.rule_id,
                    "role": "train",
                    "dataset_version": alignment.pk,
                },
                {
                    "name": "base",
                    "kind": "training",
                    "recipe": "finetune",
                    "base_model_version": models["sticker-base"].pk,
                    "params": FAST,
                },
                {
                    "name": "alignment",
                    "kind": "dataset",
                    "rule": alignment.rule_id,
                    "role": "content",
                    "dataset_version": alignment.pk,
                },
                {"name": "style", "kind": "dataset", "rule": style.rule_id, "role": "style"},
                {
                    "name": "tailored",
                    "kind": "training",
                    "recipe": "style_tailoring",
                    "base_stage": "base",
                    "params": {**FAST, "timestep_split": 600},
                },
                {
                    "name": "evaluation",
                    "kind": "evaluation",
                    "arms": ["base", "tailored"],
                    "base_model_version": models["sticker-base"].pk,
                    "prompt_set": held_out.pk,
                    "seeds": [0, 1],
                },
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    pipeline = Pipeline.objects.get(pk=response.json()["id"])

    def statuses() -> list[str]:
        return list(pipeline.stages.order_by("position").values_list("status", flat=True))

    wait_for(
        lambda: statuses() == ["succeeded"] * 3 + ["waiting", "pending", "pending"],
        timeout=300,
        message=f"{statuses()}\n{worker.log()}",
    )
    # when a curator publishes the style set through the API
    published = api(curator).post(f"/api/dataset-versions/{style.pk}/publish/")
    assert published.status_code == 200, published.json()

    # then the worker runs Style Tailoring from the base stage's model, then the evaluation
    def done():
        pipeline.refresh_from_db()
        return pipeline.status != "running"

    wait_for(done, timeout=600, interval=1, message=f"{statuses()}\n{worker.log()}")
    assert (pipeline.status, pipeline.error) == ("succeeded", ""), worker.log()
    stages = list(pipeline.stages.order_by("position").select_related("job", "experiment"))
    base, tailored, evaluation = stages[1], stages[4], stages[5]
    assert tailored.job.base_model_version == base.job.output_model_version
    assert (tailored.training_trigger.version, base.training_trigger.version) == (style, alignment)
    assert evaluation.experiment.status == "rating"
    assert list(
        evaluation.experiment.arms.order_by("position").values_list("model_version", flat=True)
    ) == [
        models["sticker-base"].pk,
        base.job.output_model_version_id,
        tailored.job.output_model_version_id,
    ]
