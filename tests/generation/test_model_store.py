"""Model folders in a bucket on a real S3-compatible server (moto's): registered by their
``s3://`` URI, copied once to the worker that loads them, and refused, with the URI named, when
they lie outside the bucket or the models directory."""

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generation.model_store import CACHE_DIR, model_folder_publish
from generation.models import BatchStatus, Candidate, ModelVersion
from generation.services.batches import generation_batch_create, generation_batch_plan
from generation.services.chunks import generation_chunk_run
from generation.services.prompts import prompt_set_import
from stickerloop.storage import COMPLETE_MARKER

pytestmark = pytest.mark.django_db


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def _register(api, engineer, uri: str):
    return api(engineer).post(
        "/api/model-versions/register/",
        {"name": "from-bucket", "kind": "image", "uri": uri},
        format="json",
    )


def test_a_bucket_model_registers_and_generates_from_its_local_copy(
    s3_bucket, moto_server, models_dir, api, engineer, tiny_models_root
):
    uri = model_folder_publish(tiny_models_root / "sticker-base", name="sticker-copy")
    assert uri == f"s3://{s3_bucket}/models/sticker-copy/"

    response = _register(api, engineer, uri)

    assert response.status_code == 201, response.json()
    assert (response.json()["uri"], response.json()["max_prompt_tokens"]) == (uri, 77)
    version = ModelVersion.objects.get(name="from-bucket")
    # when: a chunk runs (as on a gpu worker) with the model, which is only in the bucket
    prompt_set, _ = prompt_set_import(name="p", content="a cat\n", file_format="text")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[version],
        seeds=[1],
        params={"num_inference_steps": 2},
    )
    [chunk] = generation_batch_plan(batch_id=batch.pk)
    generation_chunk_run(chunk_id=chunk)
    # then: the candidate is in the bucket, drawn with the copy under the models directory
    batch.refresh_from_db()
    assert (batch.status, batch.done_count) == (BatchStatus.SUCCEEDED, 1), batch.error
    [candidate] = Candidate.objects.filter(batch=batch)
    assert candidate.file in moto_server.keys(s3_bucket)
    copies = sorted(p.name for p in (models_dir / CACHE_DIR).iterdir())
    digest = copies[0].removeprefix("models--sticker-copy-")
    assert len(digest) == 16
    assert copies == [f"models--sticker-copy-{digest}", f"models--sticker-copy-{digest}-configs"]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "s3://another-bucket/models/m/",
            "s3://another-bucket/models/m/ is outside the bucket '{bucket}' "
            "(STICKERLOOP_S3_BUCKET).",
        ),
        (
            "s3://{bucket}/candidates/m/",
            "s3://{bucket}/candidates/m/ is outside the bucket's models/ folder.",
        ),
        (
            "s3://{bucket}/models/../m/",
            "s3://{bucket}/models/../m/ is outside the bucket's models/ folder.",
        ),
        (
            "s3://{bucket}/models/half/",
            f"No complete model at s3://{{bucket}}/models/half/: {COMPLETE_MARKER} is missing.",
        ),
    ],
)
def test_a_bucket_uri_outside_the_bucket_or_incomplete_is_refused(
    s3_bucket, models_dir, api, engineer, uri, message
):
    # a model copy that stopped halfway: files, no marker
    default_storage.save("models/half/model_index.json", ContentFile(b"{}"))

    response = _register(api, engineer, uri.format(bucket=s3_bucket))

    assert response.status_code == 400
    assert response.json() == {"uri": [message.format(bucket=s3_bucket)]}
    assert not ModelVersion.objects.exists()


def test_with_a_bucket_a_local_folder_outside_the_models_directory_is_refused(
    s3_bucket, models_dir, api, engineer, tiny_models_root
):
    response = _register(api, engineer, str(tiny_models_root / "sticker-base"))

    assert response.status_code == 400
    assert response.json() == {
        "uri": [
            f"{tiny_models_root / 'sticker-base'} is outside the models directory "
            f"{models_dir.resolve()} (STICKERLOOP_MODELS_DIR): with a bucket, models live in "
            "the bucket or there."
        ]
    }
    assert not ModelVersion.objects.exists()


def test_a_bucket_uri_without_a_bucket_configured_is_refused(api, engineer):
    response = _register(api, engineer, "s3://stickers/models/m/")

    assert response.status_code == 400
    assert response.json() == {
        "uri": [
            "s3://stickers/models/m/ is in a bucket, but no bucket is configured "
            "(STICKERLOOP_S3_BUCKET)."
        ]
    }
    assert not ModelVersion.objects.exists()
