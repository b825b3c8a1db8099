"""Training jobs on a real ``train`` worker (Celery subprocess, Redis, PostgreSQL): every recipe
end to end with its new model generating through the generation workers, kill and resume,
cancel, a crashing recipe, and the external launcher's command run standalone."""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from annotation.models import Campaign, Item
from generation.models import Candidate, ModelVersion
from tests import factories
from tests.conftest import wait_for
from training_bridge.jobs import tasks as job_tasks
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import EvaluationStatus, JobStatus, TrainingJob, TrainingJobLoss
from training_bridge.jobs.output import training_job_register_output

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db):
    """A transactional test empties every table after it, the role groups of the data migration
    included; the users of the next test need them back."""
    factories.ensure_roles()


@pytest.fixture
def train_worker(start_worker, settings):
    """Start a worker whose jobs write under this test's TRAINING_DIR; orphans show after 3 s."""
    settings.TRAINING_STALE_SECONDS = 3

    def start(queues: str = "train"):
        return start_worker(
            queues=queues,
            STICKERLOOP_TRAINING_DIR=settings.TRAINING_DIR,
            STICKERLOOP_TRAINING_DEVICE="cpu",
            STICKERLOOP_TRAINING_STALE_SECONDS=3,
            STICKERLOOP_HEARTBEAT_SECONDS=1,
            # One torch thread per process: on the 2-core machine, two threads spin against the
            # worker, PostgreSQL and this process, and the first steps then take 10x longer.
            OMP_NUM_THREADS=1,
        )

    return start


def _wait_job(job, worker, *, until, timeout=180, interval=0.2):
    def reached():
        job.refresh_from_db()
        return until(job)

    wait_for(
        reached,
        timeout=timeout,
        interval=interval,
        message=f"job {job.pk} is {job.status}: {job.error}\n{job.log_tail[-2000:]}\n"
        f"{worker.log()[-3000:]}",
    )
    return job


def _finished(job):
    return job.is_finished


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_every_recipe_trains_on_the_worker_and_its_model_generates_against_the_parent(
    train_worker, models, datasets, api, engineer, rater
):
    held_out = factories.prompt_set(["a happy corgi", "a red balloon"], held_out=True)
    source = factories.sticker_candidate(
        models["sticker-base"], held_out.prompts.get(position=0), seed=5, index=3
    )
    worker = train_worker("train,default,gpu")
    fast = {"train_batch_size": 2, "method": "lora", "checkpointing_steps": 100}
    image, anim = models["sticker-base"].pk, models["anim-student"].pk
    alignment, style = datasets["alignment"].pk, datasets["style"].pk
    requests = {
        "finetune": {
            "base_model_version": image,
            "params": {**fast, "max_train_steps": 2},
            "datasets": [{"role": "train", "dataset_version": alignment}],
        },
        "sequential": {
            "base_model_version": image,
            "params": {**fast, "max_train_steps": 2, "first_stage_steps": 1},
            "datasets": [
                {"role": "first", "dataset_version": alignment},
                {"role": "second", "dataset_version": style},
            ],
        },
        "style_tailoring": {
            "base_model_version": image,
            "params": {**fast, "max_train_steps": 2, "timestep_split": 600},
            "datasets": [
                {"role": "content", "dataset_version": alignment},
                {"role": "style", "dataset_version": style},
            ],
        },
        "distill_student": {
            "base_model_version": anim,
            "params": {
                "train_batch_size": 2,
                "max_train_steps": 2,
                "num_frames": 4,
                "inference_steps": 2,
            },
            "datasets": [
                {"role": "teacher_selection", "dataset_version": datasets["teacher_selection"].pk}
            ],
            "evaluation_sources": [source.pk],
        },
    }
    client = api(engineer)
    jobs = {}
    for recipe, body in requests.items():
        response = client.post(
            "/api/training-jobs/create/",
            {"recipe": recipe, "evaluation_seeds": [7], **body},
            format="json",
        )
        assert response.status_code == 201, response.json()
        jobs[recipe] = TrainingJob.objects.get(pk=response.json()["id"])

    def evaluated(job):
        evaluation = getattr(job, "evaluation", None)
        return job.is_finished and (
            job.status != JobStatus.SUCCEEDED
            or (evaluation is not None and evaluation.status != EvaluationStatus.GENERATING)
        )

    for recipe, job in jobs.items():
        _wait_job(
            job, worker, until=lambda j: evaluated(TrainingJob.objects.get(pk=j.pk)), timeout=300
        )
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, (recipe, job.error, job.log_tail[-2000:])
        version = job.output_model_version
        assert version.parent_id == job.base_model_version_id
        assert version.provenance["training_job"] == job.pk
        assert job.step == job.total_steps == 2
        roles = set(TrainingJobLoss.objects.filter(job=job).values_list("role", flat=True))
        assert roles == set(job.dataset_links.values_list("role", flat=True))
        # The evaluation generated with the new model and its parent through the gpu queue and
        # opened a pair campaign of same-prompt (or same-source), same-seed candidates.
        evaluation = job.evaluation
        assert evaluation.status == EvaluationStatus.OPEN, (recipe, evaluation.error)
        campaign = Campaign.objects.get(pk=evaluation.campaign_id)
        assert (campaign.kind, campaign.status, campaign.preset) == ("pair", "running", "pairwise")
        assert campaign.memberships.filter(rater=rater).exists()
        items = list(Item.objects.filter(campaign=campaign).prefetch_related("candidates"))
        expected = 2 if version.kind == "image" else 1
        assert len(items) == evaluation.pairs == expected
        for item in items:
            shown = list(item.candidates.all())
            assert {c.model_version_id for c in shown} == {version.pk, version.parent_id}
            assert len({(c.prompt_id, c.source_id, c.seed) for c in shown}) == 1
            assert all(c.seed == 7 and default_storage.exists(c.file) for c in shown)
    tailored = jobs["style_tailoring"]
    assert tailored.output_model_version.provenance == {
        "training_job": tailored.pk,
        "recipe": "style_tailoring",
        "base_model_version": models["sticker-base"].pk,
        "datasets": [
            {
                "dataset_version_id": alignment,
                "role": "content",
                "purpose": "alignment",
                "manifest_sha256": datasets["alignment"].manifest_sha256,
            },
            {
                "dataset_version_id": style,
                "role": "style",
                "purpose": "style",
                "manifest_sha256": datasets["style"].manifest_sha256,
            },
        ],
        "params": tailored.params,
        "steps": 2,
        "final_loss": tailored.metrics["final_loss"],
    }
    assert tailored.output_model_version.name == f"sticker-base-style-tailoring-job{tailored.pk}"
    assert list(TrainingJobLoss.objects.filter(job=tailored).values_list("step", "role")) == [
        (1, "content"),
        (1, "style"),
        (2, "content"),
        (2, "style"),
    ]
    # Registering again (a redelivered message) returns the same version, creates none.
    assert training_job_register_output(job=tailored) == tailored.output_model_version
    assert ModelVersion.objects.filter(produced_by_job__isnull=False).count() == 4
    student = jobs["distill_student"].output_model_version
    assert (student.kind, student.role, student.default_params["num_inference_steps"]) == (
        "animation",
        "student",
        2,
    )
    assert jobs["distill_student"].metrics["teacher_counts"] == {
        "anim-teacher-a": 2,
        "anim-teacher-b": 2,
    }
    animations = Candidate.objects.filter(model_version=student)
    assert [(a.source_id, a.frame_count) for a in animations] == [(source.pk, 4)]


def test_a_killed_worker_leaves_a_job_that_the_sweep_resumes_from_its_checkpoint(
    train_worker, models, datasets
):
    job = training_job_create(
        recipe="style_tailoring",
        base_model_version=models["sticker-base"],
        datasets={"content": datasets["alignment"], "style": datasets["style"]},
        params={
            "max_train_steps": 80,
            "train_batch_size": 4,
            "checkpointing_steps": 5,
            "timestep_split": 300,
            "method": "lora",
        },
        evaluate=False,
    )
    first = train_worker()
    _wait_job(job, first, until=lambda j: (j.last_checkpoint_step or 0) >= 5, interval=0.05)
    recipe_pid = int(job.worker.rsplit(":", 1)[1])
    # when: the worker dies without a chance to clean up
    first.kill()
    wait_for(lambda: not _alive(recipe_pid), timeout=10, message="the recipe outlived its worker")
    job.refresh_from_db()
    checkpoint = job.last_checkpoint_step
    assert job.status == JobStatus.RUNNING and job.step < 80
    # then: once its heartbeat is stale the sweep requeues it (at the default visibility
    # timeout the broker would not give the message back for an hour); a new worker continues it
    killed_at = time.monotonic()
    second = train_worker()

    def swept(job):
        job_tasks.sweep()  # what beat runs every SWEEP_EVERY_SECONDS
        return job.is_finished

    _wait_job(job, second, until=swept, timeout=120, interval=1)
    assert time.monotonic() - killed_at < 120
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log_tail[-2000:])
    assert (job.attempt, job.step, job.total_steps) == (1, 80, 80)
    assert job.resumed_from_step is not None and job.resumed_from_step >= checkpoint >= 5
    assert job.metrics["steps"] == 80 and job.metrics["resumed_from_step"] == job.resumed_from_step
    assert ModelVersion.objects.filter(parent=models["sticker-base"]).count() == 1
    steps = list(
        TrainingJobLoss.objects.filter(job=job, role="content").values_list("step", flat=True)
    )
    assert steps == list(range(1, 81))
    log_path = Path(job.output_model_version.uri, "logs", "timesteps.jsonl")
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 81))
    assert all(t >= 300 for row in log for t in row["timesteps"]["content"])
    assert all(t < 300 for row in log for t in row["timesteps"]["style"])


def test_cancel_stops_the_recipe_and_a_crash_fails_the_job_but_not_the_worker(
    train_worker, models, datasets, api, engineer, tmp_path
):
    worker = train_worker()
    long_job = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 100_000, "train_batch_size": 2, "method": "lora"},
        evaluate=False,
    )
    _wait_job(long_job, worker, until=lambda j: j.step >= 2)
    recipe_pid = int(long_job.worker.rsplit(":", 1)[1])
    # when
    response = api(engineer).post(f"/api/training-jobs/{long_job.pk}/cancel/")
    # then
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_for(lambda: not _alive(recipe_pid), timeout=15, message="the recipe kept running")
    assert api(engineer).post(f"/api/training-jobs/{long_job.pk}/cancel/").status_code == 409

    # A base model whose weights are corrupt: the recipe fails to load it.
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(models["sticker-base"].uri, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    bad_base = ModelVersion.objects.create(name="broken", kind="image", uri=str(broken))
    crashing = training_job_create(
        recipe="finetune",
        base_model_version=bad_base,
        datasets={"train": datasets["alignment"]},
        params={"max_train_steps": 2, "train_batch_size": 2},
        evaluate=False,
    )
    _wait_job(crashing, worker, until=_finished)
    assert crashing.status == JobStatus.FAILED
    assert crashing.error.startswith(f"ModelLoadError: model folder {broken} is corrupt")
    assert "Traceback" in crashing.log_tail
    assert crashing.output_model_version is None
    # The worker lived through both (it ran the second job after the cancel) and is still up.
    assert worker.proc.poll() is None
    long_job.refresh_from_db()
    assert (long_job.status, long_job.output_model_version) == (JobStatus.CANCELLED, None)
    assert not ModelVersion.objects.filter(produced_by_job__isnull=False).exists()


def test_the_external_launchers_command_runs_the_recipe_standalone(
    models, datasets, api, engineer, settings, train_worker
):
    # The local copies, spec and command are made by a task on the default queue.
    worker = train_worker("default")
    client = api(engineer)
    response = client.post(
        "/api/training-jobs/create/",
        {
            "recipe": "finetune",
            "base_model_version": models["sticker-base"].pk,
            "datasets": [{"role": "train", "dataset_version": datasets["alignment"].pk}],
            "params": {"max_train_steps": 2, "train_batch_size": 2, "method": "lora"},
            "launcher": "external",
            "evaluate": False,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["launch_command"] == ""
    job = _wait_job(
        TrainingJob.objects.get(pk=response.json()["id"]),
        worker,
        until=lambda j: j.launch_command or j.is_finished,
    )
    body = client.get(f"/api/training-jobs/{job.pk}/").json()
    job_id = body["id"]
    spec_path = Path(settings.TRAINING_DIR) / f"job-{job_id}" / "spec.json"
    assert body["launch_command"] == (
        "accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no "
        f"--dynamo_backend no -m training_bridge.recipes.train --spec {spec_path} "
        "--resume-from-checkpoint latest"
    )
    spec = json.loads(spec_path.read_text())
    assert spec["recipe"] == "finetune" and spec["params"]["max_train_steps"] == 2
    assert body["status"] == "queued"
    # when: the command runs as it is, outside the platform
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = subprocess.run(
        shlex.split(body["launch_command"]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"event"')]
    assert [e["event"] for e in events] == ["start", "progress", "progress", "done"]
    # then: its lines are reported through the API and its output registered
    report = client.post(
        f"/api/training-jobs/{job_id}/report/",
        {"events": events, "log": run.stdout.splitlines()},
        format="json",
    )
    assert report.status_code == 200, report.json()
    assert report.json() == {"keep_running": True, "status": "running", "step": 2}
    registered = client.post(f"/api/training-jobs/{job_id}/register-output/", {}, format="json")
    assert registered.status_code == 200, registered.json()
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert registered.json()["model_version"] == job.output_model_version_id
    assert list(TrainingJobLoss.objects.filter(job=job).values_list("step", flat=True)) == [1, 2]
    # Registering again answers the same version.
    again = client.post(f"/api/training-jobs/{job_id}/register-output/", {}, format="json")
    assert again.json()["model_version"] == job.output_model_version_id
