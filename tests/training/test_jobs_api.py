"""Creating training jobs through the API: what is stored, and bad input answered with 400 and
nothing stored."""

import pytest

from generation.models import ModelVersion
from tests import factories
from training_bridge.jobs.models import TrainingJob, TrainingJobDataset

pytestmark = pytest.mark.django_db

FAST = {"max_train_steps": 3, "train_batch_size": 2}


def _payload(models, versions, **overrides):
    payload = {
        "recipe": "style_tailoring",
        "base_model_version": models["sticker-base"].pk,
        "datasets": [
            {"role": "content", "dataset_version": versions["alignment"].pk},
            {"role": "style", "dataset_version": versions["style"].pk},
        ],
        "params": {**FAST, "timestep_split": 600},
    }
    payload.update(overrides)
    return payload


def test_create_stores_the_job_with_resolved_parameters(api, engineer, models, datasets):
    response = api(engineer).post(
        "/api/training-jobs/create/", _payload(models, datasets), format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    job = TrainingJob.objects.get()
    assert (body["id"], body["status"], body["step"], body["total_steps"]) == (
        job.pk,
        "queued",
        0,
        3,
    )
    assert body["params"]["timestep_split"] == 600
    assert body["params"]["content_ratio"] == 0.5
    assert body["params"]["method"] == "full"
    assert body["params"]["resolution"] == 64
    assert [(d["role"], d["dataset_version"], d["manifest_sha256"]) for d in body["datasets"]] == [
        ("content", datasets["alignment"].pk, datasets["alignment"].manifest_sha256),
        ("style", datasets["style"].pk, datasets["style"].manifest_sha256),
    ]
    assert job.trigger == {"source": "manual"}
    assert job.requested_by == engineer
    assert job.work_dir.endswith(f"job-{job.pk}")


def _bad(api, engineer, payload):
    response = api(engineer).post("/api/training-jobs/create/", payload, format="json")
    assert response.status_code == 400
    assert not TrainingJob.objects.exists()
    assert not TrainingJobDataset.objects.exists()
    return response.json()


def test_split_outside_the_schedule_is_400(api, engineer, models, datasets):
    body = _bad(api, engineer, _payload(models, datasets, params={"timestep_split": 1000}))
    assert body == {
        "params.timestep_split": ["`timestep_split` has to be an integer in [0, 1000) but is 1000."]
    }


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"learning_rate": 0},
            "params.learning_rate",
            "`learning_rate` has to be a number in (0, 0.01] but is 0.",
        ),
        (
            {"max_train_steps": 2_000_000},
            "params.max_train_steps",
            "`max_train_steps` has to be an integer in [1, 1000000] but is 2000000.",
        ),
        (
            {"train_batch_size": "four"},
            "params.train_batch_size",
            "`train_batch_size` has to be an integer in [1, 512] but is 'four'.",
        ),
    ],
)
def test_parameters_out_of_range_are_400(api, engineer, models, datasets, params, field, message):
    body = _bad(api, engineer, _payload(models, datasets, params=params))
    assert body == {field: [message]}


def test_wrong_roles_are_400(api, engineer, models, datasets):
    payload = _payload(
        models,
        datasets,
        datasets=[
            {"role": "content", "dataset_version": datasets["alignment"].pk},
            {"role": "train", "dataset_version": datasets["style"].pk},
        ],
    )
    assert _bad(api, engineer, payload) == {
        "datasets": [
            "The style_tailoring recipe takes one dataset per role content, style but got content, "
            "train."
        ]
    }


def test_an_image_dataset_for_an_animation_student_is_400(api, engineer, models, datasets):
    payload = {
        "recipe": "distill_student",
        "base_model_version": models["anim-student"].pk,
        "datasets": [{"role": "teacher_selection", "dataset_version": datasets["alignment"].pk}],
    }
    version = datasets["alignment"]
    assert _bad(api, engineer, payload) == {
        "datasets.teacher_selection": [
            f"Dataset version {version.pk} ({version}) has purpose alignment, which the role "
            "teacher_selection does not take (it takes teacher_selection)."
        ]
    }


def test_an_animation_dataset_for_an_image_model_is_400(api, engineer, models):
    motion = factories.dataset_version(
        models, purpose="weak", kind="animation", train=1, validation=0
    )
    payload = {
        "recipe": "finetune",
        "base_model_version": models["sticker-base"].pk,
        "datasets": [{"role": "train", "dataset_version": motion.pk}],
    }
    assert _bad(api, engineer, payload) == {
        "datasets.train": [
            f"Dataset version {motion.pk} ({motion}) holds animation entries but the base model is "
            "an image model."
        ]
    }


def test_an_unpublished_dataset_is_400(api, engineer, models, datasets):
    draft = factories.dataset_version(
        models, purpose="style", status="draft", train=1, validation=0
    )
    payload = _payload(
        models,
        datasets,
        datasets=[
            {"role": "content", "dataset_version": datasets["alignment"].pk},
            {"role": "style", "dataset_version": draft.pk},
        ],
    )
    assert _bad(api, engineer, payload) == {
        "datasets.style": [
            f"Dataset version {draft.pk} ({draft}) is draft; only published versions train."
        ]
    }


def test_a_base_model_without_a_folder_is_400(api, engineer, models, datasets, tmp_path):
    gone = ModelVersion.objects.create(name="gone", kind="image", uri=str(tmp_path / "gone"))
    body = _bad(api, engineer, _payload(models, datasets, base_model_version=gone.pk))
    assert body == {
        "base_model_version": [f"The base model folder {tmp_path / 'gone'} does not exist."]
    }


def test_a_student_recipe_on_an_image_model_is_400(api, engineer, models, datasets):
    payload = {
        "recipe": "distill_student",
        "base_model_version": models["sticker-base"].pk,
        "datasets": [
            {"role": "teacher_selection", "dataset_version": datasets["teacher_selection"].pk}
        ],
    }
    assert _bad(api, engineer, payload) == {
        "base_model_version": [
            "The distill_student recipe trains animation models; sticker-base is an image model."
        ]
    }


def test_unknown_dataset_version_and_repeated_role_are_400(api, engineer, models, datasets):
    body = _bad(
        api,
        engineer,
        _payload(models, datasets, datasets=[{"role": "content", "dataset_version": 999999}]),
    )
    assert body == {"datasets": ["Dataset version 999999 does not exist."]}
    body = _bad(
        api,
        engineer,
        _payload(
            models,
            datasets,
            datasets=[
                {"role": "content", "dataset_version": datasets["alignment"].pk},
                {"role": "content", "dataset_version": datasets["alignment"].pk},
            ],
        ),
    )
    assert body == {"datasets": ["The role content is given twice."]}


def test_a_prompt_set_that_is_not_held_out_is_400(api, engineer, models, datasets):
    prompts = factories.prompt_set(["a cat"])
    body = _bad(api, engineer, _payload(models, datasets, evaluation_prompt_set=prompts.pk))
    assert body == {
        "evaluation_prompt_set": [
            f"Prompt set {prompts.name!r} is not held out; evaluation uses held-out prompts only."
        ]
    }


def test_raters_and_curators_cannot_start_jobs(api, rater, curator, models, datasets):
    for user in (rater, curator):
        response = api(user).post(
            "/api/training-jobs/create/", _payload(models, datasets), format="json"
        )
        assert response.status_code == 403
    assert not TrainingJob.objects.exists()
    assert api(curator).get("/api/training-jobs/").status_code == 200
    assert api(rater).get("/api/training-jobs/").status_code == 403
