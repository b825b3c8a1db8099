"""The home page: what needs my attention, per role (stickerloop.home)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Campaign
from annotation.quality.services.runs import aggregation_run_execute, aggregation_run_request
from tests import factories as f
from tests.conftest import get_ok
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.models import EvaluationStatus, TrainingJob, TrainingJobEvaluation
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion
from training_bridge.pipelines.models import Pipeline

pytestmark = pytest.mark.django_db


def _ids(html: str, section: str, key: str) -> list[int]:
    """The ids listed in one section, in page order."""
    body = re.search(rf'<ul id="{section}">(.*?)</ul>', html, re.S).group(1)
    return [int(pk) for pk in re.findall(rf'data-{key}="(\d+)"', body)]


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _export(version, status: str, finished) -> DatasetExport:
    return DatasetExport.objects.create(
        version=version,
        format="parquet",
        status=status,
        finished_at=finished,
        sha256="0" * 64 if status == "succeeded" else "",
    )


def _built(rule: DatasetRule, at) -> DatasetVersion:
    """A version of ``rule`` built at ``at`` (its entries do not matter here)."""
    number = rule.versions.count() + 1
    version = DatasetVersion.objects.create(
        rule=rule,
        number=number,
        purpose=rule.purpose,
        kind=rule.kind,
        rule_snapshot={},
        manifest_sha256=f"{rule.pk:032d}{number:032d}",
        entry_count=1,
        train_count=1,
        validation_count=0,
    )
    DatasetVersion.objects.filter(pk=version.pk).update(created_at=at)
    return version


def _rule(name: str, campaigns: list, **fields) -> DatasetRule:
    rule = DatasetRule.objects.create(name=name, purpose="alignment", kind="image", **fields)
    rule.campaigns.set(campaigns)
    return rule


def _job(models, version, **fields) -> TrainingJob:
    job = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": version},
        params={"max_train_steps": 4, "train_batch_size": 2},
        evaluate=False,
    )
    TrainingJob.objects.filter(pk=job.pk).update(**fields)
    return job


def _curator_world(models):
    """A campaign all judged, one judged after its results, one whose results are current, and
    exports done lately, long ago and not yet."""
    done = f.campaign(questions=f.BINARY_SCHEMA, overlap=1, name="all judged")
    rater = f.raters(1, campaign=done)[0]
    f.judge(f.items(done, 1)[0], rater, {"ok": True})
    current = f.campaign(questions=f.BINARY_SCHEMA, overlap=2, name="current")
    f.judge(f.items(current, 1)[0], f.raters(1, prefix="c", campaign=current)[0], {"ok": True})
    aggregation_run_execute(
        run_id=aggregation_run_request(campaign=current, methods=["majority"]).pk
    )
    version = f.dataset_version(models, purpose="alignment")
    now = timezone.now()
    exports = [
        _export(version, status, finished)
        for status, finished in [
            ("succeeded", now - timedelta(days=1)),
            ("succeeded", now - timedelta(days=30)),
            ("running", None),
        ]
    ]
    return done, current, exports, version


def test_a_curator_sees_finished_campaigns_results_behind_and_exports_ready(site, curator, models):
    done, current, exports, _ = _curator_world(models)
    html = _page(site(curator), "/")
    assert _ids(html, "campaigns-done", "campaign") == [done.pk]
    # "all judged" has a judgment and no results; "current" has results newer than its judgment
    assert _ids(html, "results-behind", "campaign") == [done.pk]
    assert "last judgment" in html and "no results computed" in html
    assert _ids(html, "exports-done", "export") == [exports[0].pk]
    assert 'id="engineer-attention"' not in html


def test_a_curator_sees_rules_whose_campaigns_were_judged_since_their_newest_version(site, curator):
    # given a campaign with a gold item (3), judged before and after the rules were built
    now = timezone.now()
    camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=2, name="judged")
    items = f.items(camp, 4, gold={3: {"ok": True}})
    ann, bob = f.raters(2, campaign=camp)
    f.judge(items[0], ann, {"ok": True}, at=now - timedelta(hours=2))
    f.judge(items[0], bob, {"ok": True})
    f.judge(items[1], ann, {"ok": True})
    f.judge(items[1], bob, {"ok": False})
    f.judge(items[2], ann, {}, skipped=True)
    f.judge(items[2], bob, {"ok": True}, excluded=True)
    f.judge(items[3], ann, {"ok": True})
    strict = _rule("strict", [camp])
    _built(strict, now - timedelta(hours=3))
    _built(strict, now - timedelta(hours=1))
    with_gold = _rule("with gold", [camp], exclude_gold=False)
    _built(with_gold, now - timedelta(hours=1))
    _built(_rule("fresh", [camp]), now + timedelta(minutes=1))
    _rule("never built", [camp])
    quiet = f.campaign(questions=f.BINARY_SCHEMA, overlap=1, name="quiet")
    f.items(quiet, 1)
    _built(_rule("quiet", [quiet]), now - timedelta(hours=1))

    # when
    html = _page(site(curator), "/")

    # then items 0 and 1 are new for both, the gold item 3 for "with gold" only; the skipped
    # and the excluded judgment on item 2 and the one made before the builds do not count
    assert _ids(html, "rules-new-matches", "rule") == [with_gold.pk, strict.pk]
    built = timezone.localtime(now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert (
        f'<a href="/datasets/rules/{with_gold.pk}/">with gold</a>: 3 items judged since its '
        f"newest version, built {built}" in html
    )
    assert f'<a href="/datasets/rules/{strict.pk}/">strict</a>: 2 items judged' in html


def test_an_engineer_sees_jobs_evaluations_and_failed_pipelines(site, engineer, models):
    version = f.dataset_version(models, purpose="alignment")
    now = timezone.now()
    running = _job(models, version, status="running", started_at=now, name="runner")
    failed = _job(models, version, status="failed", finished_at=now, error="out of memory")
    _job(models, version, status="failed", finished_at=now - timedelta(days=30), error="old")
    skipped = _job(models, version, status="succeeded", finished_at=now, evaluate=True)
    TrainingJobEvaluation.objects.create(
        job=skipped, status=EvaluationStatus.SKIPPED, error="No held-out prompt set."
    )
    closed = _job(models, version, status="succeeded", finished_at=now, evaluate=True)
    campaign = f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1, name="pairs")
    TrainingJobEvaluation.objects.create(
        job=closed, status=EvaluationStatus.OPEN, campaign=campaign
    )
    still_open = _job(models, version, status="succeeded", finished_at=now, evaluate=True)
    TrainingJobEvaluation.objects.create(
        job=still_open,
        status=EvaluationStatus.OPEN,
        campaign=f.campaign(questions=f.PAIR_SCHEMA, kind="pair", overlap=1, name="open"),
    )
    Campaign.objects.filter(pk=campaign.pk).update(status="closed")
    stopped = Pipeline.objects.create(name="loop", status="failed", error="Stage 1: boom")
    Pipeline.objects.create(name="fine")

    html = _page(site(engineer), "/")

    assert _ids(html, "jobs-running", "job") == [running.pk]
    assert _ids(html, "jobs-failed", "job") == [failed.pk]
    assert '<span class="error">out of memory</span>' in html
    assert sorted(_ids(html, "evaluations", "job")) == [skipped.pk, closed.pk]
    assert "evaluation skipped: No held-out prompt set." in html
    assert f'<a href="/quality/campaigns/{campaign.pk}/">pairs</a> closed' in html
    assert _ids(html, "pipelines-failed", "pipeline") == [stopped.pk]
    assert 'id="curator-attention"' not in html


def test_an_admin_sees_both_a_rater_goes_to_the_queue_and_no_role_a_note(site, admin_user, rater):
    html = _page(site(admin_user), "/")
    assert 'id="curator-attention"' in html and 'id="engineer-attention"' in html
    assert html.count("<li>None.</li>") == 8
    response = site(rater).get("/")
    assert (response.status_code, response["Location"]) == (302, "/rate/")
    nobody = f.user("nobody", [])
    assert "Your account holds no role yet." in _page(site(nobody), "/")


def test_the_home_page_takes_a_fixed_number_of_queries(site, admin_user, models, flat_queries):
    version = f.dataset_version(models, purpose="alignment")
    made = iter(range(100))

    def grow(n):
        now = timezone.now()
        for _ in range(n):
            i = next(made)
            camp = f.campaign(questions=f.BINARY_SCHEMA, overlap=1, name=f"c{i}")
            rater = f.raters(1, prefix=f"r{i}-", campaign=camp)[0]
            f.judge(f.items(camp, 1)[0], rater, {"ok": True})
            _export(version, "succeeded", now)
            _job(models, version, status="running", started_at=now)
            _job(models, version, status="failed", finished_at=now, error="x")
            Pipeline.objects.create(name=f"p{i}", status="failed", error="boom")
            _built(_rule(f"rule {i}", [camp]), now - timedelta(hours=1))

    browser = site(admin_user)
    # session, user, roles, then a fixed few per section whatever its rows
    flat_queries(grow=grow, read=lambda: get_ok(browser, "/"), count=15)
