"""Exports in a bucket on a real S3-compatible server (moto's): written by name with the complete
marker last, downloaded by a short-lived presigned URL that Django never proxies, and read back
by training from the bucket; what runs that stopped for good staged there is swept away."""

import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.timezone import now

from stickerloop.storage import COMPLETE_MARKER, staging_key
from tests import factories as f
from tests.curation.export_helpers import export_now
from tests.security.test_media import login, token_client
from training_bridge import tasks as curation_tasks
from training_bridge.exports.local_copy import dataset_version_local_copy
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion

pytestmark = pytest.mark.django_db


def test_an_export_is_written_to_the_bucket_with_its_marker_last(
    s3_bucket, moto_server, sticker_version, curator
):
    export = export_now(sticker_version, "parquet", curator)

    # the export's files and its marker, and nothing staged
    assert [k for k in moto_server.keys(s3_bucket) if k.startswith("exports/")] == sorted(
        [
            *(f"{export.storage_prefix}{item['name']}" for item in export.files),
            f"{export.storage_prefix}{COMPLETE_MARKER}",
        ]
    )
    body = (
        moto_server.client()
        .get_object(Bucket=s3_bucket, Key=f"{export.storage_prefix}{COMPLETE_MARKER}")["Body"]
        .read()
    )
    assert json.loads(body) == {
        "files": [
            {"name": item["name"], "size": item["size"], "sha256": item["sha256"]}
            for item in export.files
        ]
    }


def test_an_export_downloads_by_a_presigned_url_with_a_short_life(
    s3_bucket, sticker_version, curator, settings
):
    settings.STICKERLOOP_MEDIA_URL_SECONDS = 600
    export = export_now(sticker_version, "imagefolder", curator)
    [entry] = export.files

    response = token_client(curator, f.PASSWORD).get(f"/api/dataset-exports/{export.pk}/download/")

    # then: a redirect to the bucket, signed for 600 s; Django streams no byte of the file
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(f"{settings.STORAGES['default']['OPTIONS']['endpoint_url']}/")
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["600"]
    assert "X-Amz-Signature" in query
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == entry["sha256"]
    # saved by a browser under the dataset's name, version and format (signed with the URL)
    assert query["response-content-disposition"] == [
        'attachment; filename="align-v1-imagefolder.tar"'
    ]
    assert fetched.headers["Content-Disposition"] == (
        'attachment; filename="align-v1-imagefolder.tar"'
    )
    # the same URL without its signature is refused by the bucket
    assert requests.get(location.split("?")[0], timeout=10).status_code == 403


def test_a_rater_gets_no_export_url_and_the_media_route_refuses_export_keys(
    s3_bucket, sticker_version, curator
):
    export = export_now(sticker_version, "imagefolder", curator)
    rater = f.user("rita", ["rater"])

    download = token_client(rater, f.PASSWORD).get(f"/api/dataset-exports/{export.pk}/download/")
    media = login(curator, f.PASSWORD).get(f"/media/{export.files[0]['key']}")

    assert download.status_code == 403
    assert media.status_code == 404


def test_training_reads_an_export_back_from_the_bucket(s3_bucket, sticker_version, curator):
    export_now(sticker_version, "imagefolder", curator)

    folder = dataset_version_local_copy(version=sticker_version)

    lines = (folder / "train" / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == sticker_version.train_count
    first = json.loads(lines[0])
    assert (folder / "train" / first["file_name"]).is_file()


def _export_with_objects(version, status: str, *, staged: bool, complete: bool = False):
    """An export row in ``status`` and what a run of it stored: a committed part, with a
    staged one beside it (``staged``) or its complete marker (``complete``)."""
    export = DatasetExport.objects.create(
        version=version,
        format="parquet",
        status=status,
        total=4,
        parts=2,
        heartbeat_at=now(),
        sha256="0" * 64 if status == "succeeded" else "",
    )
    export.storage_prefix = f"exports/v{version.pk}/{export.pk}-parquet/"
    export.save(update_fields=["storage_prefix"])
    # Written as the objects they end as, one request each (committing by name takes three).
    prefix = export.storage_prefix
    default_storage.save(f"{prefix}train-00000-of-00002.parquet", ContentFile(b"rows"))
    if staged:
        default_storage.save(
            staging_key(f"{prefix}train-00001-of-00002.parquet"), ContentFile(b"half")
        )
    if complete:
        default_storage.save(f"{prefix}{COMPLETE_MARKER}", ContentFile(b'{"files": []}'))
    return export


def _bare_version():
    rule = DatasetRule.objects.create(name="align-sweep", purpose="alignment", kind="image")
    return DatasetVersion.objects.create(
        rule=rule,
        number=1,
        purpose="alignment",
        kind="image",
        status="published",
        rule_snapshot={},
        manifest_sha256="0" * 64,
        entry_count=4,
        train_count=4,
        validation_count=0,
        published_at=now(),
    )


def _swept(caplog) -> list[str]:
    with caplog.at_level(logging.WARNING, logger="stickerloop.storage"):
        curation_tasks.sweep_exports()  # what beat runs every SWEEP_EVERY_SECONDS
    return [r.getMessage() for r in caplog.records if r.name == "stickerloop.storage"]


def test_the_export_sweep_removes_what_stopped_runs_staged_and_keeps_the_rest(
    s3_bucket, moto_server, settings, caplog
):
    # given: a failed export and one whose row is gone, each with a committed and a staged part
    # and no marker; a running export alike; a succeeded one with its marker
    settings.SWEEP_STALE_SECONDS = 0
    version = _bare_version()
    failed = _export_with_objects(version, "failed", staged=True)
    running = _export_with_objects(version, "running", staged=True)
    done = _export_with_objects(version, "succeeded", staged=False, complete=True)
    gone = _export_with_objects(version, "failed", staged=True)
    gone_prefix = gone.storage_prefix
    gone.delete()
    kept = [
        k
        for k in moto_server.keys(s3_bucket)
        if k.startswith((running.storage_prefix, done.storage_prefix))
    ]

    logged = _swept(caplog)

    assert moto_server.keys(s3_bucket) == kept
    assert len(kept) == 4
    assert logged == [
        f"removed 2 staged object(s) under {prefix} ({reason}): "
        f"{prefix}.train-00001-of-00002.parquet.staging, "
        f"{prefix}train-00000-of-00002.parquet"
        for prefix, reason in sorted(
            [
                (failed.storage_prefix, f"export {failed.pk} failed"),
                (gone_prefix, "no such export"),
            ]
        )
    ]
    # and the next sweep finds nothing more to remove
    caplog.clear()
    assert _swept(caplog) == []


def test_the_export_sweep_waits_before_removing_recent_or_unowned_staging(
    s3_bucket, moto_server, settings, caplog
):
    # given: a failed export written to just now, and a succeeded one whose marker is missing
    version = _bare_version()
    failed = _export_with_objects(version, "failed", staged=True)
    done = _export_with_objects(version, "succeeded", staged=False)
    before = moto_server.keys(s3_bucket)

    # when: the failed export's writer may still be storing a file, and the unmarked set is young
    settings.SWEEP_STALE_SECONDS = 60
    settings.STORAGE_STAGED_MAX_AGE_SECONDS = 86400
    assert _swept(caplog) == []
    assert moto_server.keys(s3_bucket) == before

    # when: both have waited long enough
    settings.SWEEP_STALE_SECONDS = 0
    settings.STORAGE_STAGED_MAX_AGE_SECONDS = 0
    logged = _swept(caplog)

    assert moto_server.keys(s3_bucket) == []
    failed_line = (
        f"removed 2 staged object(s) under {failed.storage_prefix} (export {failed.pk} failed): "
        f"{failed.storage_prefix}.train-00001-of-00002.parquet.staging, "
        f"{failed.storage_prefix}train-00000-of-00002.parquet"
    )
    done_line = (
        f"removed 1 staged object(s) under {done.storage_prefix} (export {done.pk} succeeded): "
        f"{done.storage_prefix}train-00000-of-00002.parquet"
    )
    # (in the order of their prefixes)
    assert logged == [
        line
        for _, line in sorted(
            [(failed.storage_prefix, failed_line), (done.storage_prefix, done_line)]
        )
    ]
