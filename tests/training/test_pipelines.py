"""Pipelines: declaring one (and every refusal, storing nothing), advancing it stage by stage
through training triggers as versions are published and jobs end, failing at a stage and
resuming from it, and advancing once however often or however concurrently it is asked."""

import base64
import json

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from generation.models import ModelVersion
from generation.services.batches import generation_batch_cancel, generation_batch_plan
from generation.services.chunks import generation_chunk_run
from stickerloop import events
from stickerloop.errors import ServiceConflict
from tests import factories
from tests.conftest import run_at_once
from training_bridge.experiments.models import Experiment, ExperimentStatus
from training_bridge.experiments.services.experiments import experiment_advance
from training_bridge.jobs.lifecycle import training_job_cancel
from training_bridge.jobs.models import JobStatus, TrainingJob
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.triggers import dataset_version_publish_and_train
from training_bridge.models import TrainingTrigger
from training_bridge.pipelines import tasks as pipeline_tasks
from training_bridge.pipelines.models import Pipeline, PipelineStage
from training_bridge.pipelines.selectors import pipelines_waiting_on
from training_bridge.pipelines.services.declaration import pipeline_create
from training_bridge.pipelines.services.pipelines import pipeline_advance, pipeline_resume

FINETUNE = {"max_train_steps": 4, "train_batch_size": 2}
TAILORING = {"max_train_steps": 4, "timestep_split": 700}


def _stages(models, alignment, style_rule_id, held_out) -> list[dict]:
    """Weak-ish corpus → base finetune → HITL sets → Style Tailoring → evaluation."""
    return [
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
            "params": FINETUNE,
        },
        {
            "name": "alignment",
            "kind": "dataset",
            "rule": alignment.rule_id,
            "role": "content",
            "dataset_version": alignment.pk,
        },
        {"name": "style", "kind": "dataset", "rule": style_rule_id, "role": "style"},
        {
            "name": "tailored",
            "kind": "training",
            "recipe": "style_tailoring",
            "base_stage": "base",
            "params": TAILORING,
        },
        {
            "name": "evaluation",
            "kind": "evaluation",
            "arms": ["tailored"],
            "base_stage": "base",
            "prompt_set": held_out.pk,
            "seeds": [0, 1],
        },
    ]


@pytest.fixture
def declared(models, datasets, engineer):
    style = factories.dataset_version(models, purpose="style", status="draft")
    held_out = factories.prompt_set(["a waving cat"], held_out=True)
    pipeline = pipeline_create(
        name="tailoring loop",
        stages=_stages(models, datasets["alignment"], style.rule_id, held_out),
        created_by=engineer,
    )
    return pipeline, style


def _statuses(pipeline) -> list[str]:
    return list(pipeline.stages.order_by("position").values_list("status", flat=True))


def _stage(pipeline, position: int) -> PipelineStage:
    return pipeline.stages.get(position=position)


def _on_event(object_type: str, object_id: int) -> list[int]:
    """What the ``pipelines.on_event`` task does with an announcement."""
    ids = pipelines_waiting_on(object_type=object_type, object_id=object_id)
    for pipeline_id in ids:
        pipeline_advance(pipeline_id=pipeline_id)
    return ids


def _finish(job) -> ModelVersion:
    factories.fake_finished_output(job)
    return training_job_register_output(job=job)


@pytest.mark.django_db
def test_a_pipeline_runs_every_stage_through_triggers_publishes_and_job_ends(
    declared, models, datasets, curator, engineer, one_torch_thread
):
    pipeline, style = declared
    assert _statuses(pipeline) == ["pending"] * 6
    # when the worker takes the declaration's message
    assert pipeline_advance(pipeline_id=pipeline.pk) is False
    # then the given corpus version completes stage 0 and fires the base finetune through a
    # training trigger on it
    assert _statuses(pipeline) == ["succeeded", "running", *["pending"] * 4]
    base_stage = _stage(pipeline, 1)
    trigger = base_stage.training_trigger
    assert (trigger.version, trigger.origin, trigger.status, trigger.requested_by) == (
        datasets["alignment"],
        "pipeline",
        "fired",
        engineer,
    )
    base_job = base_stage.job
    assert trigger.job_id == base_job.pk
    assert (base_job.recipe, base_job.base_model_version, base_job.name, base_job.evaluate) == (
        "finetune",
        models["sticker-base"],
        "tailoring loop · base",
        False,
    )
    assert base_job.trigger == {
        "source": "dataset_publish",
        "dataset_version_id": datasets["alignment"].pk,
        "pipeline": pipeline.pk,
        "pipeline_stage": base_stage.pk,
    }
    # when the job succeeds: stage 2 is given, stage 3 waits for the style rule's publish
    base_model = _finish(base_job)
    assert _on_event("training_job", base_job.pk) == [pipeline.pk]
    assert _statuses(pipeline) == ["succeeded"] * 3 + ["waiting", "pending", "pending"]
    assert _on_event("dataset_version", datasets["alignment"].pk) == []
    # when a curator publishes the style version
    dataset_version_publish_and_train(version=style, published_by=curator)
    assert _on_event("dataset_version", style.pk) == [pipeline.pk]
    # then Style Tailoring fires on it, from the base stage's model, with the alignment set
    assert _statuses(pipeline) == ["succeeded"] * 4 + ["running", "pending"]
    tailored = _stage(pipeline, 4)
    assert _stage(pipeline, 3).dataset_version == style
    assert (tailored.training_trigger.version, tailored.training_trigger.trigger["role"]) == (
        style,
        "style",
    )
    job = tailored.job
    assert (job.recipe, job.base_model_version, job.params["timestep_split"]) == (
        "style_tailoring",
        base_model,
        700,
    )
    assert dict(job.dataset_links.values_list("role", "dataset_version_id")) == {
        "content": datasets["alignment"].pk,
        "style": style.pk,
    }
    # when it succeeds, the evaluation stage opens an experiment: the base stage's model is
    # the base arm, the tailored model the other; it is polled while its arms generate
    tailored_model = _finish(job)
    assert _on_event("training_job", job.pk) == [pipeline.pk]
    evaluation = _stage(pipeline, 5)
    experiment = evaluation.experiment
    assert (evaluation.status, experiment.status) == ("running", "generating")
    assert list(experiment.arms.order_by("position").values_list("model_version", "is_base")) == [
        (base_model.pk, True),
        (tailored_model.pk, False),
    ]
    assert pipeline_advance(pipeline_id=pipeline.pk) is True
    for arm in experiment.arms.all():
        generation_batch_plan(batch_id=arm.batch_id)
        for chunk in arm.batch.chunks.all():
            generation_chunk_run(chunk_id=chunk.pk)
    assert experiment_advance(experiment_id=experiment.pk) is True
    # then the pipeline has succeeded
    assert pipeline_advance(pipeline_id=pipeline.pk) is False
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.current_position, pipeline.error) == ("succeeded", 5, "")
    assert pipeline.finished_at is not None
    assert _statuses(pipeline) == ["succeeded"] * 6
    assert TrainingTrigger.objects.filter(origin="pipeline").count() == 2


@pytest.mark.django_db
def test_a_cancelled_job_fails_the_pipeline_at_its_stage_and_resume_resumes_the_job(
    declared, engineer
):
    pipeline, _ = declared
    pipeline_advance(pipeline_id=pipeline.pk)
    job = _stage(pipeline, 1).job
    # when
    training_job_cancel(job=job, cancelled_by=engineer)
    _on_event("training_job", job.pk)
    # then
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.current_position, pipeline.error) == (
        "failed",
        1,
        f"Stage 1 (base): Job {job.pk} cancelled: Cancelled by engineer.",
    )
    assert _statuses(pipeline) == ["succeeded", "failed", *["pending"] * 4]
    # when resumed, the same job is queued again (next attempt) and the stage runs
    pipeline_resume(pipeline=pipeline)
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.error, _stage(pipeline, 1).status) == (
        "running",
        "",
        "pending",
    )
    pipeline_advance(pipeline_id=pipeline.pk)
    job.refresh_from_db()
    stage = _stage(pipeline, 1)
    assert (stage.status, stage.job, stage.attempts, job.status, job.attempt) == (
        "running",
        job,
        2,
        JobStatus.QUEUED,
        2,
    )
    assert TrainingJob.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_trigger_fails_the_stage_with_its_reason_and_resume_fires_it_again(
    declared, models
):
    pipeline, _ = declared
    base = models["sticker-base"]
    ModelVersion.objects.filter(pk=base.pk).update(is_active=False)
    # when
    pipeline_advance(pipeline_id=pipeline.pk)
    # then
    stage = _stage(pipeline, 1)
    pipeline.refresh_from_db()
    reason = (
        "The training trigger failed: base_model_version: Model version sticker-base is retired."
    )
    assert (stage.status, stage.error, stage.job) == ("failed", reason, None)
    assert (pipeline.status, pipeline.error) == ("failed", f"Stage 1 (base): {reason}")
    assert stage.training_trigger.status == "failed"
    assert TrainingJob.objects.count() == 0
    # a running pipeline does not resume
    ModelVersion.objects.filter(pk=base.pk).update(is_active=True)
    pipeline_resume(pipeline=pipeline)
    with pytest.raises(ServiceConflict, match=f"Pipeline {pipeline.pk} is running; only a failed"):
        pipeline_resume(pipeline=pipeline)
    # when the worker starts the stage again: the same trigger fires
    pipeline_advance(pipeline_id=pipeline.pk)
    stage.refresh_from_db()
    assert (stage.status, stage.error, stage.attempts) == ("running", "", 2)
    assert stage.training_trigger.status == "fired"
    assert stage.training_trigger.job_id == stage.job_id
    assert TrainingTrigger.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_experiment_fails_the_evaluation_and_resume_opens_a_new_one(
    models, datasets, engineer
):
    held_out = factories.prompt_set(["a waving cat"], held_out=True)
    stages = _stages(models, datasets["alignment"], datasets["style"].rule_id, held_out)
    stages[3]["dataset_version"] = datasets["style"].pk
    pipeline = pipeline_create(name="evaluated", stages=stages, created_by=engineer)
    pipeline_advance(pipeline_id=pipeline.pk)
    _finish(_stage(pipeline, 1).job)
    pipeline_advance(pipeline_id=pipeline.pk)
    _finish(_stage(pipeline, 4).job)
    pipeline_advance(pipeline_id=pipeline.pk)
    experiment = _stage(pipeline, 5).experiment
    # when every arm's batch is cancelled, the experiment fails
    for arm in experiment.arms.all():
        generation_batch_cancel(batch=arm.batch)
    experiment_advance(experiment_id=experiment.pk)
    assert pipeline_advance(pipeline_id=pipeline.pk) is False
    # then
    experiment.refresh_from_db()
    pipeline.refresh_from_db()
    assert experiment.status == ExperimentStatus.FAILED
    assert pipeline.error == (
        f"Stage 5 (evaluation): Experiment {experiment.pk} failed: {experiment.error}"
    )
    # when resumed
    pipeline_resume(pipeline=pipeline)
    assert pipeline_advance(pipeline_id=pipeline.pk) is True
    stage = _stage(pipeline, 5)
    assert (stage.status, stage.attempts) == ("running", 2)
    assert stage.experiment.name == f"Pipeline {pipeline.pk} · evaluated · evaluation · attempt 2"
    assert Experiment.objects.count() == 2


@pytest.mark.django_db
def test_a_redelivered_message_fires_the_stage_once(declared, curator):
    pipeline, style = declared
    pipeline_advance(pipeline_id=pipeline.pk)
    _finish(_stage(pipeline, 1).job)
    _on_event("training_job", _stage(pipeline, 1).job_id)
    dataset_version_publish_and_train(version=style, published_by=curator)
    # when the publish's message is handled twice, and the pipeline advanced once more
    assert _on_event("dataset_version", style.pk) == [pipeline.pk]
    assert _on_event("dataset_version", style.pk) == []
    assert pipeline_advance(pipeline_id=pipeline.pk) is False
    # then one trigger and one job for the stage
    assert TrainingTrigger.objects.filter(version=style).count() == 1
    assert TrainingJob.objects.filter(recipe="style_tailoring").count() == 1
    assert _statuses(pipeline) == ["succeeded"] * 4 + ["running", "pending"]


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_advances_fire_each_stage_once(models, engineer):
    alignment = factories.dataset_version(models, purpose="alignment")
    pipeline = pipeline_create(
        name="raced",
        stages=[
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
                "params": FINETUNE,
            },
        ],
        created_by=engineer,
    )
    # when six workers advance it at once
    results, errors = run_at_once(
        [lambda: pipeline_advance(pipeline_id=pipeline.pk)] * 6, timeout=120
    )
    # then
    assert (errors, results) == ([], [False] * 6)
    assert TrainingJob.objects.count() == 1
    assert TrainingTrigger.objects.count() == 1
    assert _statuses(pipeline) == ["succeeded", "running"]


@pytest.mark.django_db
def test_inputs_train_one_set_in_several_roles_across_the_arms(models, engineer):
    alignment = factories.dataset_version(models, purpose="alignment", status="draft")
    style = factories.dataset_version(models, purpose="style", status="draft")
    base = models["sticker-base"].pk
    pipeline = pipeline_create(
        name="arms",
        stages=[
            {"name": "aligned", "kind": "dataset", "rule": alignment.rule_id, "role": "content"},
            {"name": "styled", "kind": "dataset", "rule": style.rule_id, "role": "style"},
            {
                "name": "style-only",
                "kind": "training",
                "recipe": "finetune",
                "base_model_version": base,
                "inputs": {"train": "styled"},
            },
            {
                "name": "sequential",
                "kind": "training",
                "recipe": "sequential",
                "base_model_version": base,
                "inputs": {"first": "aligned", "second": "styled"},
            },
        ],
        created_by=engineer,
    )
    pipeline_advance(pipeline_id=pipeline.pk)
    # when the two sets are published, each arm fires in turn as the one before succeeds
    dataset_version_publish_and_train(version=alignment, published_by=engineer)
    _on_event("dataset_version", alignment.pk)
    dataset_version_publish_and_train(version=style, published_by=engineer)
    _on_event("dataset_version", style.pk)
    for position in (2, 3):
        _finish(_stage(pipeline, position).job)
        _on_event("training_job", _stage(pipeline, position).job_id)
    # then each job trained on the sets its inputs named, whatever role the stage fills
    jobs = {
        stage.name: dict(stage.job.dataset_links.values_list("role", "dataset_version_id"))
        for stage in pipeline.stages.filter(kind="training")
    }
    assert jobs == {
        "style-only": {"train": style.pk},
        "sequential": {"first": alignment.pk, "second": style.pk},
    }
    assert list(pipeline.stages.values_list("inputs", flat=True)) == [
        {},
        {},
        {"train": "styled"},
        {"first": "aligned", "second": "styled"},
    ]
    pipeline.refresh_from_db()
    assert pipeline.status == "succeeded"


def _refused(stages, **kwargs) -> dict:
    with pytest.raises(ValidationError) as caught:
        pipeline_create(name=kwargs.pop("name", "refused"), stages=stages, **kwargs)
    assert (Pipeline.objects.count(), PipelineStage.objects.count()) == (0, 0)
    return caught.value.message_dict


@pytest.mark.django_db
def test_declarations_that_do_not_fit_are_refused_naming_the_field(models, datasets):
    alignment, style = datasets["alignment"], datasets["style"]
    base = models["sticker-base"].pk
    draft = factories.dataset_version(models, purpose="alignment", status="draft")
    corpus = {"name": "corpus", "kind": "dataset", "rule": alignment.rule_id, "role": "content"}
    assert _refused(
        [
            corpus,
            {
                "name": "tailored",
                "kind": "training",
                "recipe": "style_tailoring",
                "base_model_version": base,
            },
        ]
    ) == {
        "stages.1.inputs.style": [
            "The style_tailoring recipe trains on a dataset in role 'style'; no earlier dataset "
            "stage fills that role."
        ]
    }
    assert _refused(
        [corpus, {"name": "x", "kind": "training", "recipe": "dreambooth", "base_stage": "nope"}]
    ) == {
        "stages.1.recipe": [
            "Unknown recipe 'dreambooth'; use one of finetune, sequential, style_tailoring, "
            "distill_student."
        ],
        "stages.1.base_stage": ["No earlier training stage named 'nope'."],
    }
    assert _refused(
        [
            corpus,
            {"name": "x", "kind": "training", "recipe": "finetune", "base_model_version": 999999},
        ]
    ) == {
        "stages.1.base_model_version": ["No model version with id 999999."],
        "stages.1.inputs.train": [
            "The finetune recipe trains on a dataset in role 'train'; no earlier dataset stage "
            "fills that role."
        ],
    }
    assert _refused(
        [
            {**corpus, "role": "style", "dataset_version": draft.pk},
            {**corpus, "rule": 999999, "dataset_version": style.pk, "colour": "red"},
        ]
    ) == {
        "stages.0.role": [
            f"Rule {alignment.rule.name!r} makes alignment datasets, which the role style does "
            "not take (it takes style)."
        ],
        "stages.0.dataset_version": [
            f"Dataset version {draft.pk} is not a version of rule {alignment.rule.name!r}."
        ],
        "stages.1": ["Unknown field(s) for a dataset stage: colour."],
        "stages.1.name": ["Stage 0 is named 'corpus' already."],
        "stages.1.rule": ["No dataset rule with id 999999."],
    }
    assert _refused(
        [
            {**corpus, "rule": draft.rule_id, "dataset_version": draft.pk},
            {
                "name": "Bad Name",
                "kind": "evaluation",
                "arms": ["corpus"],
                "base_model_version": base,
            },
            {"kind": "deploy"},
        ],
        name=" ",
    ) == {
        "name": ["A pipeline needs a name."],
        "stages.0.dataset_version": [
            f"Dataset version {draft.pk} is draft; give a published version, or none to wait "
            "for the rule's next publish."
        ],
        "stages.1.name": [
            "A stage needs a name of at most 100 lowercase letters, digits, hyphens or underscores."
        ],
        "stages.1.arms": ["No earlier training stage named 'corpus'."],
        "stages.2.kind": ["Unknown stage kind 'deploy'; use one of dataset, training, evaluation."],
    }
    assert _refused([]) == {"stages": ["Give 1 to 20 stages, in the order they run."]}
    finetune = {"name": "x", "kind": "training", "recipe": "finetune", "base_model_version": base}
    styled = {"name": "styled", "kind": "dataset", "rule": style.rule_id, "role": "style"}
    assert _refused(
        [corpus, styled, {**finetune, "inputs": {"first": "corpus", "train": "nope"}}]
    ) == {
        "stages.2.inputs.first": ["The finetune recipe takes no role 'first'; it takes train."],
        "stages.2.inputs.train": ["No earlier dataset stage named 'nope'."],
    }
    assert _refused(
        [corpus, styled, {**finetune, "recipe": "style_tailoring", "inputs": {"style": "corpus"}}]
    ) == {
        "stages.2.inputs.style": [
            "Stage 'corpus' makes alignment datasets, which the role style does not take (it "
            "takes style)."
        ]
    }
    assert _refused([corpus, {**finetune, "inputs": ["corpus"]}]) == {
        "stages.1.inputs": [
            "Must be a JSON object of role → the name of an earlier dataset stage."
        ],
        "stages.1.inputs.train": [
            "The finetune recipe trains on a dataset in role 'train'; no earlier dataset stage "
            "fills that role."
        ],
    }


@pytest.mark.django_db
def test_publishes_and_job_ends_queue_one_pipelines_message_each(
    broker_clean, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        events.publish(events.TRAINING_JOB_FAILED, object_type="training_job", object_id=7)
        events.publish(events.BATCH_FAILED, object_type="generation_batch", object_id=5)
    # then the pipelines listener queued one message, for the job (the batch is none of its)
    tasks = []
    for raw in broker_clean.lrange("default", 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], args))
    assert [args for task, args in tasks if task == "pipelines.on_event"] == [
        ["training_job.failed", "training_job", 7]
    ]
    assert sorted(task for task, _ in tasks) == [
        "pipelines.on_event",
        "webhooks.record_event",
        "webhooks.record_event",
    ]


@pytest.mark.django_db
def test_the_beat_sweep_advances_a_pipeline_whose_message_was_lost(declared):
    pipeline, _ = declared
    finished = Pipeline.objects.create(
        name="done", status="succeeded", finished_at=pipeline.created_at
    )
    # when beat's sweep runs (the declaration's message never reached a worker)
    pipeline_tasks.sweep()
    # then the running pipeline moved on and the finished one was left alone
    assert _statuses(pipeline) == ["succeeded", "running", *["pending"] * 4]
    finished.refresh_from_db()
    assert (finished.status, finished.current_position) == ("succeeded", 0)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_database_refuses_stages_that_break_the_pipeline_rules(datasets):
    rule = datasets["alignment"].rule
    pipeline = Pipeline.objects.create(name="constrained")
    dataset = {"pipeline": pipeline, "kind": "dataset", "rule": rule, "role": "train"}
    PipelineStage.objects.create(position=0, name="a", status="waiting", **dataset)
    refused = {
        "pipeline_stage_unique_position": {"position": 0, "name": "b", **dataset},
        "pipeline_stage_unique_name": {"position": 1, "name": "a", **dataset},
        "pipeline_one_active_stage": {"position": 1, "name": "b", "status": "running", **dataset},
        "pipeline_stage_failed_has_error": {
            "position": 1,
            "name": "b",
            "status": "failed",
            **dataset,
        },
        "pipeline_stage_status_known": {"position": 1, "name": "b", "status": "paused", **dataset},
        "pipeline_dataset_stage_succeeded_has_version": {
            "position": 1,
            "name": "b",
            "status": "succeeded",
            **dataset,
        },
        "pipeline_dataset_stage_has_rule_and_role": {
            "position": 1,
            "name": "b",
            **{**dataset, "role": ""},
        },
        "pipeline_stage_one_base": {
            "pipeline": pipeline,
            "position": 1,
            "name": "b",
            "kind": "training",
            "recipe": "finetune",
        },
    }
    for constraint, fields in refused.items():
        with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
            PipelineStage.objects.create(**fields)
    with pytest.raises(IntegrityError, match="pipeline_failed_has_error"), transaction.atomic():
        Pipeline.objects.filter(pk=pipeline.pk).update(status="failed")
    assert PipelineStage.objects.count() == 1
