"""Job services without a worker: progress reports, cancel, resume, output registration, the
dataset-publish trigger, and the evaluation that follows a success."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Campaign, Item
from generation.models import Candidate, GenerationBatch, ModelVersion
from generation.services.batches import generation_batch_plan
from generation.services.chunks import generation_chunk_run
from stickerloop.errors import ServiceConflict
from tests import factories
from tests.factories import fake_finished_output, progress_events
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.evaluation import training_job_evaluation_advance
from training_bridge.jobs.execution import resume_point, training_job_prepare_external
from training_bridge.jobs.lifecycle import output_dir, training_job_create, training_job_resume
from training_bridge.jobs.models import (
    EvaluationStatus,
    JobStatus,
    TrainingJob,
    TrainingJobEvaluation,
    TrainingJobLoss,
)
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report
from training_bridge.jobs.triggers import training_job_create_from_trigger
from training_bridge.models import DatasetExport, DatasetRule, TrainingTrigger

pytestmark = pytest.mark.django_db


def _finetune(models, datasets, **kwargs):
    return training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 4, "train_batch_size": 2},
        **kwargs,
    )


def test_progress_reports_record_steps_losses_and_resumed_steps_overwrite(models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    keep = training_job_progress_report(
        job=job,
        events=progress_events(job, {"train": [1.0, 0.9, 0.8]}),
        log_lines=["loading", "step 3"],
    )
    job.refresh_from_db()
    assert keep is True
    assert (job.status, job.step, job.last_loss, job.load_seconds) == (
        JobStatus.RUNNING,
        3,
        {"train": 0.8},
        1.25,
    )
    assert job.seconds_per_step == 0.1 and job.eta_seconds == pytest.approx(0.1)
    assert job.log_tail == "loading\nstep 3\n"
    # A resumed attempt reports step 3 again (from its checkpoint at 2): it overwrites.
    training_job_progress_report(
        job=job,
        events=[
            {"event": "start", "step": 2, "resumed_from": 2, "load_s": 0.5},
            {"event": "progress", "step": 3, "loss": {"train": 0.75}, "seconds_per_step": 0.2},
            {"event": "checkpoint", "step": 3, "path": "/x/checkpoint-3"},
        ],
    )
    rows = list(TrainingJobLoss.objects.filter(job=job).values_list("step", "loss"))
    assert rows == [(1, 1.0), (2, 0.9), (3, 0.75)]
    job.refresh_from_db()
    assert (job.resumed_from_step, job.last_checkpoint_step) == (2, 3)


def test_an_error_event_fails_the_job_and_later_reports_are_refused(models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    keep = training_job_progress_report(
        job=job,
        events=[
            {"event": "error", "message": "OutOfMemoryError: CUDA out of memory", "type": "OOM"}
        ],
    )
    job.refresh_from_db()
    assert keep is False
    assert (job.status, job.error) == (JobStatus.FAILED, "OutOfMemoryError: CUDA out of memory")
    with pytest.raises(ServiceConflict, match=f"Job {job.pk} has already ended"):
        training_job_progress_report(job=job, events=[])


def test_bad_reports_are_400_and_change_nothing(api, engineer, models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    client = api(engineer)
    url = f"/api/training-jobs/{job.pk}/report/"
    response = client.post(url, {"events": [{"event": "lunch"}]}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "events.0": [
            "Each event is an object whose 'event' is one of start, progress, checkpoint, done, "
            "error."
        ]
    }
    response = client.post(
        url, {"events": [{"event": "progress", "step": 5, "loss": {}}]}, format="json"
    )
    assert response.json() == {"events.0.step": ["Step 5 is beyond the job's 4 steps."]}
    job.refresh_from_db()
    assert (job.status, job.step, job.heartbeat_at) == (JobStatus.QUEUED, 0, None)
    assert not TrainingJobLoss.objects.exists()


def test_cancel_then_resume_then_conflicts(api, engineer, models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    client = api(engineer)
    assert client.post(f"/api/training-jobs/{job.pk}/cancel/").json()["status"] == "cancelled"
    # A runner still reporting is told to stop.
    assert training_job_progress_report(job=job, events=[], attempt=1) is False
    response = client.post(f"/api/training-jobs/{job.pk}/resume/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempt"]) == ("queued", 2)
    # The first attempt's runner, if it still lived, is superseded.
    assert training_job_progress_report(job=job, events=[], attempt=1) is False
    assert client.post(f"/api/training-jobs/{job.pk}/resume/").json() == {
        "detail": f"Job {job.pk} is queued already."
    }
    # A running job with a live heartbeat cannot be resumed; a silent one can.
    training_job_progress_report(job=job, events=[], attempt=2)
    response = client.post(f"/api/training-jobs/{job.pk}/resume/")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Job {job.pk} is running (last heartbeat ")
    TrainingJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=600)
    )
    assert client.post(f"/api/training-jobs/{job.pk}/resume/").json()["attempt"] == 3


def test_registration_checks_the_output_and_never_registers_twice(models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    training_job_progress_report(job=job, events=[])
    # A folder without a summary, or one that stopped early, is not this job's output.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        training_job_register_output(job=job)
    folder = output_dir(job)
    assert error.value.message_dict == {
        "output_dir": [f"{folder} has no training_summary.json: the run did not finish there."]
    }
    fake_finished_output(job, steps=3)
    with pytest.raises(ValidationError) as error:
        training_job_register_output(job=job)
    assert error.value.message_dict == {
        "output_dir": [f"The output at {folder} is not this job's: it stopped at step 3 of 4."]
    }
    assert not ModelVersion.objects.filter(parent__isnull=False).exists()
    fake_finished_output(job)
    # when
    first = training_job_register_output(job=job)
    again = training_job_register_output(job=job)
    # then
    job.refresh_from_db()
    assert first == again == job.output_model_version
    assert (job.status, job.step) == (JobStatus.SUCCEEDED, 4)
    assert (first.parent, first.role, first.uri) == (
        models["sticker-base"],
        "finetuned",
        str(folder),
    )
    assert ModelVersion.objects.filter(parent=models["sticker-base"]).count() == 1
    with pytest.raises(ServiceConflict, match="has succeeded; there is nothing to resume"):
        training_job_resume(job=job)


def test_a_failed_job_registers_nothing(models, datasets):
    job = _finetune(models, datasets, evaluate=False)
    training_job_progress_report(job=job, events=[{"event": "error", "message": "boom"}])
    fake_finished_output(job)
    with pytest.raises(ServiceConflict, match=f"Job {job.pk} is failed; resume it before"):
        training_job_register_output(job=job)
    assert not ModelVersion.objects.filter(parent__isnull=False).exists()


def test_a_dataset_publish_with_a_trigger_creates_the_job(models, datasets, curator):
    from training_bridge.jobs.triggers import dataset_version_publish_and_train

    draft = factories.dataset_version(models, purpose="style", status="draft")
    DatasetRule.objects.filter(pk=draft.rule_id).update(
        training_trigger={
            "recipe": "style_tailoring",
            "base_model_version_id": models["sticker-base"].pk,
            "role": "style",
            "datasets": {"content": datasets["alignment"].pk},
            "params": {"max_train_steps": 10, "timestep_split": 700},
        }
    )
    draft.refresh_from_db()
    # when
    dataset_version_publish_and_train(version=draft, published_by=curator)
    # then
    trigger = TrainingTrigger.objects.get(version=draft)
    assert trigger.status == "fired", trigger.error
    job = TrainingJob.objects.get(pk=trigger.job_id)
    assert job.trigger == {"source": "dataset_publish", "dataset_version_id": draft.pk}
    assert (job.recipe, job.params["timestep_split"], job.requested_by) == (
        "style_tailoring",
        700,
        curator,
    )
    assert dict(job.dataset_links.values_list("role", "dataset_version_id")) == {
        "content": datasets["alignment"].pk,
        "style": draft.pk,
    }


def test_a_trigger_that_does_not_fit_its_recipe_is_refused_with_the_reason(models, datasets):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        training_job_create_from_trigger(
            dataset_version=datasets["alignment"],
            trigger={
                "recipe": "distill_student",
                "base_model_version_id": models["anim-student"].pk,
                "params": {},
            },
        )
    version = datasets["alignment"]
    assert error.value.message_dict == {
        "datasets.teacher_selection": [
            f"Dataset version {version.pk} ({version}) has purpose alignment, which the role "
            "teacher_selection does not take (it takes teacher_selection)."
        ]
    }
    assert not TrainingJob.objects.exists()


def test_success_generates_with_both_models_and_opens_a_pair_campaign(
    models, datasets, rater, api, engineer
):
    held_out = factories.prompt_set(["a waving cat", "a tiny cactus"], held_out=True)
    job = _finetune(models, datasets, evaluation_seeds=[3])
    training_job_progress_report(job=job, events=[])
    fake_finished_output(job)
    # when
    version = training_job_register_output(job=job)
    parent = models["sticker-base"]
    # then: a batch of both models, same prompts and seeds
    evaluation = TrainingJobEvaluation.objects.get(job=job)
    assert evaluation.status == EvaluationStatus.GENERATING
    batch = evaluation.batch
    assert (batch.kind, batch.prompt_set, batch.seeds) == ("sticker", held_out, [3])
    assert set(batch.model_versions.all()) == {version, models["sticker-base"]}
    assert training_job_evaluation_advance(evaluation_id=evaluation.pk) is False
    generation_batch_plan(batch_id=batch.pk)
    for chunk in batch.chunks.all():
        generation_chunk_run(chunk_id=chunk.pk)
    assert GenerationBatch.objects.get(pk=batch.pk).status == "succeeded"
    assert training_job_evaluation_advance(evaluation_id=evaluation.pk) is True
    evaluation.refresh_from_db()
    assert (evaluation.status, evaluation.pairs) == (EvaluationStatus.OPEN, 2)
    campaign = Campaign.objects.get(pk=evaluation.campaign_id)
    assert (campaign.kind, campaign.preset, campaign.status, campaign.overlap) == (
        "pair",
        "pairwise",
        "running",
        3,
    )
    assert list(campaign.memberships.values_list("rater", flat=True)) == [rater.pk]
    for item in Item.objects.filter(campaign=campaign):
        shown = list(item.candidates.all())
        assert {c.model_version for c in shown} == {version, models["sticker-base"]}
        assert len({(c.prompt_id, c.seed) for c in shown}) == 1
    assert Candidate.objects.filter(batch=batch).count() == 4
    # When the quality side has ranked the campaign, the job shows the new model's win rate.
    from annotation.quality.models import RankingResult

    RankingResult.objects.create(
        campaign=campaign,
        question_key="overall",
        method="bradley_terry",
        n_comparisons=10,
        n_bootstrap=0,
        computed_at=timezone.now(),
        pairs=[
            {
                "a": parent.name,
                "a_id": parent.pk,
                "b": version.name,
                "b_id": version.pk,
                "a_wins": 2,
                "b_wins": 6,
                "ties": 2,
                "a_win_rate": 0.3,
            }
        ],
    )
    body = api(engineer).get(f"/api/training-jobs/{job.pk}/").json()
    assert body["evaluation"]["win_rates"] == [
        {"question": "overall", "new_wins": 6, "parent_wins": 2, "ties": 2, "new_win_rate": 0.7}
    ]


def test_no_held_out_prompts_skips_the_evaluation_with_the_reason(models, datasets):
    job = _finetune(models, datasets)
    training_job_progress_report(job=job, events=[])
    fake_finished_output(job)
    training_job_register_output(job=job)
    evaluation = TrainingJobEvaluation.objects.get(job=job)
    assert (evaluation.status, evaluation.error, evaluation.batch) == (
        EvaluationStatus.SKIPPED,
        "No held-out prompt set to evaluate on.",
        None,
    )


def test_the_report_command_records_a_runs_lines_and_registers_its_output(
    models, datasets, tmp_path
):
    import io
    import json

    from django.core.management import call_command

    job = _finetune(models, datasets, evaluate=False, launcher="external")
    training_job_prepare_external(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    assert job.launch_command.startswith("accelerate launch --num_processes 1 ")
    lines = [
        "Loading pipeline components...",
        *map(json.dumps, progress_events(job, {"train": [1.0, 0.9, 0.8, 0.7]})),
        json.dumps({"event": "done", "step": 4}),
    ]
    stdout_file = tmp_path / "stdout.jsonl"
    stdout_file.write_text("\n".join(lines) + "\n")
    fake_finished_output(job)
    out = io.StringIO()
    # when
    call_command(
        "training_job_report", job=job.pk, file=str(stdout_file), register=True, stdout=out
    )
    # then
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert out.getvalue() == (
        f"job {job.pk}: registered model version "
        f"{job.output_model_version.name} ({job.output_model_version_id})\n"
    )
    assert list(TrainingJobLoss.objects.filter(job=job).values_list("step", flat=True)) == [
        1,
        2,
        3,
        4,
    ]
    assert job.log_tail.startswith("Loading pipeline components...\n")


def test_a_resumed_attempt_starts_from_the_checkpoint_the_job_recorded(tmp_path):
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "training_state.json").write_text("{}")
    (tmp_path / "checkpoint-15").mkdir()  # being written when the worker died: no state file
    assert resume_point(TrainingJob(last_checkpoint_step=5), tmp_path) == str(
        tmp_path / "checkpoint-5"
    )
    assert resume_point(TrainingJob(last_checkpoint_step=10), tmp_path) == str(
        tmp_path / "checkpoint-10"
    )
    # none recorded, or the recorded one rotated away or never completed: the newest there is
    assert resume_point(TrainingJob(last_checkpoint_step=None), tmp_path) == "latest"
    assert resume_point(TrainingJob(last_checkpoint_step=15), tmp_path) == "latest"


def test_an_external_job_gets_its_local_copies_through_a_task(
    models, datasets, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # given: the broker is the boundary; what the creating request sends is recorded
    sent = []
    monkeypatch.setattr(job_tasks.prepare_external, "delay", lambda *args: sent.append(args))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        job = _finetune(models, datasets, evaluate=False, launcher="external")
    # then: the creating request did no export work, it queued the task
    spec_path = settings.TRAINING_DIR / f"job-{job.pk}" / "spec.json"
    assert sent == [(job.pk, 1)]
    assert (job.status, job.launch_command, DatasetExport.objects.count()) == ("queued", "", 0)
    assert not spec_path.exists()
    # when: the task runs
    job_tasks.prepare_external(job.pk, 1)
    # then
    job.refresh_from_db()
    export = DatasetExport.objects.get()
    link = job.dataset_links.get()
    assert (export.version_id, export.format, export.status) == (
        datasets["alignment"].pk,
        "imagefolder",
        "succeeded",
    )
    assert link.export_path == str(
        settings.MEDIA_ROOT.parent
        / "dataset_work"
        / "cache"
        / f"v{datasets['alignment'].pk}-imagefolder-{export.sha256[:16]}"
    )
    assert job.launch_command == (
        "accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no "
        f"--dynamo_backend no -m training_bridge.recipes.train --spec {spec_path} "
        "--resume-from-checkpoint latest"
    )
    assert (job.status, job.spec["recipe"], job.spec["launch_options"]) == (
        "queued",
        "finetune",
        {"tool": "accelerate", "num_processes": 1},
    )
    # a second delivery of the message, once the job has moved on, does nothing
    TrainingJob.objects.filter(pk=job.pk).update(attempt=2)
    job_tasks.prepare_external(job.pk, 1)
    assert DatasetExport.objects.count() == 1
