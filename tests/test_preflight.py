"""``manage.py preflight`` and the workers' start-up check: one line naming the part, exit 1,
within seconds, when the database, the broker or the storage is unreachable or misconfigured."""

import os
import socket
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from bench._common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each failure is answered within the preflight's 3 s timeouts plus Django's start-up.
BOUND_SECONDS = 10
# The start-up checks run in a subprocess, against this suite's PostgreSQL database.
pytestmark = pytest.mark.postgresql


def _database_url(name: str | None = None, *, port: int | None = None) -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{port or db['PORT'] or 5432}/"
        f"{name or db['NAME']}"
    )


def _run(*command: str, **env) -> tuple[subprocess.CompletedProcess, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STICKERLOOP_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**clean, "DATABASE_URL": _database_url(), **{k: str(v) for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def _preflight(**env) -> tuple[subprocess.CompletedProcess, float]:
    return _run("manage.py", "preflight", **env)


def _refused(result: subprocess.CompletedProcess, seconds: float) -> str:
    """The one line a refused start-up printed."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert seconds < BOUND_SECONDS
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.django_db
def test_preflight_passes_on_a_migrated_database(tmp_path):
    result, _ = _preflight(STICKERLOOP_MEDIA_ROOT=tmp_path / "media")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "preflight: database, broker and storage ready\n",
        "",
    )
    # The media folder is made, and the probe file is gone again.
    assert list((tmp_path / "media").iterdir()) == []


@pytest.mark.django_db
def test_preflight_names_an_unreachable_database(tmp_path):
    line = _refused(
        *_preflight(DATABASE_URL=_database_url(port=free_port()), STICKERLOOP_MEDIA_ROOT=tmp_path)
    )
    assert line.startswith("preflight: database: cannot connect: connection to server at"), line
    assert line.endswith(
        "Connection refused Is the server running on that host and accepting TCP/IP connections?"
    ), line


@pytest.mark.django_db
def test_preflight_gives_up_on_a_silent_database(tmp_path, silent_port):
    result, seconds = _preflight(
        DATABASE_URL=_database_url(port=silent_port), STICKERLOOP_MEDIA_ROOT=tmp_path
    )
    line = _refused(result, seconds)
    assert line.startswith("preflight: database: cannot connect: "), line
    assert "timeout expired" in line


@pytest.mark.django_db
def test_preflight_names_unapplied_migrations(tmp_path):
    # given: a new, empty database on the same server
    name = f"test_preflight_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(**{**connection.get_connection_params(), "dbname": "postgres"})
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        result, seconds = _preflight(
            DATABASE_URL=_database_url(name), STICKERLOOP_MEDIA_ROOT=tmp_path
        )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()
    count = len(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
    assert _refused(result, seconds) == (
        f"preflight: database: {count} migrations not applied, the first "
        "contenttypes.0001_initial (run `python manage.py migrate`)"
    )


@pytest.mark.django_db
def test_preflight_names_an_unreachable_broker(tmp_path):
    port = free_port()
    line = _refused(
        *_preflight(
            CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0", STICKERLOOP_MEDIA_ROOT=tmp_path
        )
    )
    assert line == (
        f"preflight: broker: cannot reach Redis: Error 111 connecting to 127.0.0.1:{port}. "
        "Connection refused."
    )


@pytest.mark.django_db
def test_preflight_gives_up_on_a_silent_broker(tmp_path, silent_port):
    line = _refused(
        *_preflight(
            CELERY_BROKER_URL=f"redis://127.0.0.1:{silent_port}/0", STICKERLOOP_MEDIA_ROOT=tmp_path
        )
    )
    assert line == "preflight: broker: cannot reach Redis: Timeout reading from socket"


@pytest.mark.django_db
def test_preflight_names_a_malformed_broker_url(tmp_path):
    line = _refused(
        *_preflight(
            CELERY_BROKER_URL="redis://127.0.0.1:notaport/0", STICKERLOOP_MEDIA_ROOT=tmp_path
        )
    )
    assert line == "preflight: broker: Port could not be cast to integer value as 'notaport'"


@pytest.mark.django_db
def test_preflight_names_a_media_folder_it_cannot_make(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _refused(*_preflight(STICKERLOOP_MEDIA_ROOT=blocker / "media"))
    assert line == (
        f"preflight: storage: cannot make {blocker}/media: [Errno 20] Not a directory: "
        f"'{blocker}/media'"
    )


@pytest.mark.django_db
def test_preflight_names_an_unreachable_bucket():
    port = free_port()
    line = _refused(
        *_preflight(
            STICKERLOOP_S3_BUCKET="stickers",
            STICKERLOOP_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            STICKERLOOP_S3_ACCESS_KEY="key",
            STICKERLOOP_S3_SECRET_KEY="secret",
        )
    )
    assert line == (
        "preflight: storage: cannot reach the bucket 'stickers': Could not connect to the "
        f'endpoint URL: "http://127.0.0.1:{port}/stickers"'
    )


@pytest.mark.e2e
@pytest.mark.django_db
def test_a_worker_stops_at_start_up_naming_its_broker(tmp_path):
    port = free_port()
    result, seconds = _run(
        *("-m", "celery", "-A", "stickerloop", "worker", "-Q", "default", "--pool", "solo"),
        CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0",
        STICKERLOOP_MEDIA_ROOT=tmp_path,
    )
    assert result.returncode == 1
    assert seconds < BOUND_SECONDS
    lines = result.stderr.splitlines()
    assert lines[-1] == (
        f"preflight: broker: cannot reach Redis: Error 111 connecting to 127.0.0.1:{port}. "
        "Connection refused."
    )
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def checking_s3(tmp_path_factory):
    """A moto S3 server that checks credentials, with a bucket and a read-only key: its first
    four requests (the bucket, the user, its policy, its key) go unchecked, every later one is
    checked against the users made through moto's IAM API."""
    import json

    from tests.conftest import MotoS3

    server = MotoS3(log_path=tmp_path_factory.mktemp("moto-auth") / "moto.log", no_auth_actions=4)
    server.client().create_bucket(Bucket="stickers")
    iam = server.client("iam")
    iam.create_user(UserName="reader")
    iam.put_user_policy(
        UserName="reader",
        PolicyName="read-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:Get*", "s3:List*", "s3:HeadBucket"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    yield server, key["AccessKeyId"], key["SecretAccessKey"]
    server.stop()


CREDENTIALS = "(STICKERLOOP_S3_ACCESS_KEY, STICKERLOOP_S3_SECRET_KEY)"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bucket", "credentials", "line"),
    [
        (
            "no-such-bucket",
            "reader",
            "preflight: storage: the bucket 'no-such-bucket' does not exist "
            "(STICKERLOOP_S3_BUCKET)",
        ),
        (
            "stickers",
            "wrong",
            f"preflight: storage: the bucket 'stickers' refused these credentials {CREDENTIALS}",
        ),
        (
            "stickers",
            "reader",
            "preflight: storage: the bucket 'stickers' cannot be written with these credentials "
            f"{CREDENTIALS}",
        ),
    ],
)
def test_preflight_names_a_bucket_it_cannot_use(checking_s3, bucket, credentials, line):
    server, reader_key, reader_secret = checking_s3
    key, secret = reader_key, reader_secret
    if credentials == "wrong":
        key, secret = "AKIAWRONGWRONGWRONG0", "not-the-secret"

    result = _refused(*_preflight(**server.env(bucket, key=key, secret=secret)))

    assert result == line
    # nothing was left in the bucket by the refused probe
    reader = server.client(key=reader_key, secret=reader_secret)
    assert reader.list_objects_v2(Bucket="stickers")["KeyCount"] == 0
