"""``make run`` as the README's newcomer types it, on a fresh folder: the Makefile sets up and
starts the embedded default (SQLite, Celery's filesystem transport, the project's own offline
models, a worker and beat). Then, over HTTP: a rater rates the demo campaign, the worker
computes its results, a curator builds, publishes and exports a dataset version from them, an
engineer finetunes the default sticker model on it and gets its evaluation campaign, and every
page linked from each role's home answers without a server error. The rest of the suite runs on
PostgreSQL; this is where SQLite is tried."""

import os
import re
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests

from bench._common import free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "stickerloop-demo"
# Pages a crawl must not follow: signing out ends the session, media and static files are not
# pages, and the admin is Django's own.
NOT_PAGES = ("/logout/", "/static/", "/rate/media/", "/admin/", "/media/")
MAX_PAGES = 120


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``make run`` in its own process group, its var folder in a temporary directory; the base
    URL once the site answers."""
    var = tmp_path_factory.mktemp("var")
    port = free_port()
    # A newcomer's shell: none of the test run's database, broker or folder settings.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STICKERLOOP_", "DJANGO_", "DATABASE_", "CELERY_"))
    }
    env["STICKERLOOP_VAR_DIR"] = str(var)
    log = (var / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"make run ended:\n{_tail(var / 'make-run.log')}")
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        _waited(up, timeout=400, message="the site did not come up", log=var / "make-run.log")
        yield base, var
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _waited(predicate, *, timeout: float, message: str, log: Path) -> None:
    """``wait_for``, with the end of ``log`` as it is when the wait gives up."""
    try:
        wait_for(predicate, timeout=timeout, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_tail(log)}") from None


def _polled(url: str, headers: dict, *, done, what: str, var: Path, timeout: float = 180) -> dict:
    """``url``'s JSON once ``done`` holds for it; on time-out, the worker's log says why."""
    _waited(
        lambda: done(requests.get(url, headers=headers, timeout=30).json()),
        timeout=timeout,
        message=f"the worker did not finish {what}",
        log=var / "worker.log",
    )
    return requests.get(url, headers=headers, timeout=30).json()


def _ended(task: dict) -> bool:
    return task["status"] in ("succeeded", "failed")


def _token(base: str, username: str) -> dict:
    answer = requests.post(
        f"{base}/api/auth/token/", json={"username": username, "password": PASSWORD}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Token {answer.json()['token']}"}


def test_rate_aggregate_build_publish_and_export_on_the_embedded_default(site):
    base, var = site
    rater = _token(base, "rater")
    campaigns = requests.get(f"{base}/api/rate/campaigns/", headers=rater, timeout=30).json()
    [campaign] = [c for c in campaigns if c["name"] == "Demo: alignment and style"]
    step_url = f"{base}/api/campaigns/{campaign['id']}/rate/"

    step = requests.post(step_url, json={"fetch": 1}, headers=rater, timeout=30)
    assert step.status_code == 200, step.text
    judged = []
    for n in range(3):
        [item] = step.json()["items"]
        [shown] = item["candidates"]
        media = requests.get(urljoin(base, shown["url"]), headers=rater, timeout=30)
        assert media.status_code == 200
        assert media.content[:8] == b"\x89PNG\r\n\x1a\n"
        step = requests.post(
            step_url,
            json={
                "fetch": 1,
                "submit": {
                    "item": item["id"],
                    "client_id": f"00000000-0000-4000-8000-00000000000{n}",
                    "seconds_on_item": 2.5,
                    "answers": {"aligned": n != 1, "style_pass": True},
                },
            },
            headers=rater,
            timeout=30,
        )
        assert step.status_code == 200, step.text
        assert step.json()["judgment"]["item"] == item["id"]
        judged.append(item["id"])
    assert len(set(judged)) == 3

    curator = _token(base, "curator")
    quality = f"{base}/api/quality/campaigns/{campaign['id']}"
    queued = requests.post(f"{quality}/compute/", json={}, headers=curator, timeout=30)
    assert queued.status_code == 202, queued.text
    run_url = f"{base}/api/quality/runs/{queued.json()['id']}/"

    run = _polled(run_url, curator, done=_ended, what="the results", var=var)
    assert run["status"] == "succeeded", run["error"]
    consensus = requests.get(
        f"{quality}/consensus/",
        params={"question_key": "aligned", "method": "majority"},
        headers=curator,
        timeout=30,
    ).json()
    labels = {row["item"]: (row["label"], row["n_judgments"]) for row in consensus}
    assert {item: labels[item] for item in judged} == {
        judged[0]: (True, 1),
        judged[1]: (False, 1),
        judged[2]: (True, 1),
    }

    # The curator turns the two aligned stickers into a published version and exports it.
    api = f"{base}/api"
    rule = requests.post(
        f"{api}/dataset-rules/create/",
        json={
            "name": "aligned demo stickers",
            "purpose": "alignment",
            "campaigns": [campaign["id"]],
            "conditions": [{"question": "aligned", "labels": [True]}],
            "min_judgments": 1,
            "validation_fraction": 0.0,
        },
        headers=curator,
        timeout=30,
    )
    assert rule.status_code == 201, rule.text
    built = requests.post(
        f"{api}/dataset-rules/{rule.json()['id']}/build/", headers=curator, timeout=60
    )
    assert built.status_code == 201, built.text
    version = built.json()["version"]
    assert version["entry_count"] == 2
    published = requests.post(
        f"{api}/dataset-versions/{version['id']}/publish/", headers=curator, timeout=30
    )
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"
    export = requests.post(
        f"{api}/dataset-versions/{version['id']}/exports/",
        json={"format": "imagefolder"},
        headers=curator,
        timeout=30,
    )
    assert export.status_code == 201, export.text
    export_url = f"{api}/dataset-exports/{export.json()['id']}/"

    export = _polled(export_url, curator, done=_ended, what="the export", var=var)
    assert export["status"] == "succeeded", export
    download = requests.get(urljoin(base, export["download_url"]), headers=curator, timeout=60)
    assert download.status_code == 200
    assert len(download.content) > 0

    # The engineer finetunes the default sticker model on it; the train queue's job makes a new
    # model version whose parent is the base, and its evaluation opens a pair campaign.
    engineer = _token(base, "engineer")
    models = requests.get(f"{api}/model-versions/", headers=engineer, timeout=30).json()
    [sticker_base] = [m for m in models["results"] if m["name"] == "sticker-base"]
    job = requests.post(
        f"{api}/training-jobs/create/",
        json={
            "recipe": "finetune",
            "base_model_version": sticker_base["id"],
            "datasets": [{"role": "train", "dataset_version": version["id"]}],
            "params": {"train_batch_size": 2, "method": "lora", "max_train_steps": 2},
            "evaluation_seeds": [7],
        },
        headers=engineer,
        timeout=30,
    )
    assert job.status_code == 201, job.text
    job_url = f"{api}/training-jobs/{job.json()['id']}/"

    def evaluated(job: dict) -> bool:
        evaluation = job["evaluation"] or {}
        return job["status"] in ("failed", "cancelled") or (
            job["status"] == "succeeded" and evaluation.get("status") not in (None, "generating")
        )

    job = _polled(
        job_url, engineer, done=evaluated, what="training and evaluation", var=var, timeout=300
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["evaluation"]["status"] == "open", job["evaluation"]
    trained = requests.get(
        f"{api}/model-versions/{job['output_model_version']}/", headers=engineer, timeout=30
    ).json()
    assert trained["parent"] == sticker_base["id"]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _signed_in(base: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{base}/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/login/"},
        timeout=30,
    )
    assert answer.status_code == 200 and "/login/" not in answer.url, answer.text[:2000]
    return session


@pytest.mark.parametrize(
    ("username", "main_page"),
    [("rater", "/rate/"), ("curator", "/campaigns/"), ("engineer", "/training/jobs/")],
)
def test_every_page_a_role_reaches_from_home_answers_without_a_server_error(
    site, username, main_page
):
    base, var = site
    session = _signed_in(base, username)
    seen: set[str] = set()
    queue = ["/"]
    failures = []
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        page = session.get(f"{base}{path}", timeout=60)
        if page.status_code >= 500:
            failures.append(f"{path}: {page.status_code}")
            continue
        if "text/html" not in page.headers.get("Content-Type", ""):
            continue
        links = _Links()
        links.feed(page.text)
        for href in links.hrefs:
            target = urlparse(urljoin(f"{base}{path}", href))
            if target.netloc != urlparse(base).netloc or target.path.startswith(NOT_PAGES):
                continue
            queue.append(target.path)
    assert failures == [], f"{failures}\n{_tail(var / 'make-run.log')}"
    # The crawl went where the role works: one that saw only the home page proves nothing.
    assert main_page in seen, sorted(seen)
