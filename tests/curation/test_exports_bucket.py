"""Exports in a bucket on a real S3-compatible server (moto's): written by name with the complete
marker last, downloaded by a short-lived presigned URL that Django never proxies, and read back
by training from the bucket."""

import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from stickerloop.storage import COMPLETE_MARKER
from tests import factories as f
from tests.curation.export_helpers import export_now
from tests.security.test_media import login, token_client
from training_bridge.exports.local_copy import dataset_version_local_copy

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
