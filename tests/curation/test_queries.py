"""Query counts of the curation pages and read endpoints, pinned and independent of how many
rows they list."""

import itertools

import pytest

from tests import factories as f
from tests.conftest import get_ok
from training_bridge.exports.create import dataset_exports_create
from training_bridge.models import DatasetExport
from training_bridge.versions import dataset_version_build, dataset_version_publish
from training_bridge.weak_imports import weak_source_create

pytestmark = pytest.mark.django_db

YES = {"aligned": True, "quality": 4}


def _published_with_exports(rule, curator):
    """A new version of ``rule``, published, with a webdataset and a parquet export."""
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    dataset_exports_create(
        version=version, export_formats=["webdataset", "parquet"], requested_by=curator
    )
    return version


@pytest.fixture
def browser(site, curator):
    return site(curator)


@pytest.fixture
def judged(make):
    """An alignment campaign: one sticker judged aligned by two raters per ``add`` call."""
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(2)]
    texts = (f"a sticker {i}" for i in itertools.count())

    def add(n: int) -> None:
        for _ in range(n):
            item = make.item(campaign, [make.sticker(next(texts))])
            for rater in raters:
                make.judge(item, rater, YES)

    add(2)
    return campaign, add


@pytest.fixture
def published(judged, curator):
    """``publish(n)`` adds ``n`` rules, each with a published version and two exports."""
    campaign, _ = judged
    names = (f"rule {i}" for i in itertools.count())

    def publish(n: int) -> list:
        versions = []
        for _ in range(n):
            rule = f.aligned_rule(campaign, curator, name=next(names), validation_fraction=0)
            versions.append(_published_with_exports(rule, curator))
        return versions

    return publish


@pytest.mark.parametrize(
    ("url", "count"),
    [
        ("/datasets/", 7),
        ("/datasets/versions/", 5),
        ("/datasets/exports/", 5),
        ("/datasets/exports/live/", 5),
        ("/api/dataset-rules/", 7),
        ("/api/dataset-versions/", 5),
        ("/api/dataset-exports/", 5),
        ("/api/dataset-audit/", 5),
    ],
)
def test_lists(url, count, browser, published, flat_queries):
    flat_queries(grow=published, read=lambda: get_ok(browser, url), count=count)


def test_rule_page_and_its_versions(browser, judged, curator, flat_queries):
    campaign, add = judged
    rule = f.aligned_rule(campaign, curator, name="growing", validation_fraction=0)

    def grow(n):
        for _ in range(n):
            add(1)
            dataset_version_build(rule=rule, built_by=curator)

    # The preview reads its sample's manifest fields in a query of its own (one chunk of
    # ``curation.planned_entries``): a build no longer holds every candidate's fields at once.
    flat_queries(grow=grow, read=lambda: get_ok(browser, f"/datasets/rules/{rule.pk}/"), count=16)


def test_version_page_and_entries(browser, judged, curator, flat_queries):
    campaign, add = judged
    rule = f.aligned_rule(campaign, curator, name="growing", validation_fraction=0)
    built = []

    def grow(n):
        add(n)
        built.append(_published_with_exports(rule, curator))

    def read():
        get_ok(browser, f"/datasets/versions/{built[-1].pk}/")
        get_ok(browser, f"/api/dataset-versions/{built[-1].pk}/entries/")

    flat_queries(grow=grow, read=read, count=15)


def test_weak_sources(browser, curator, flat_queries):
    names = (f"source-{i}" for i in itertools.count())

    def grow(n):
        for _ in range(n):
            weak_source_create(name=next(names), kind="image", created_by=curator)

    def read():
        get_ok(browser, "/datasets/weak-sources/")
        get_ok(browser, "/api/weak-sources/")
        get_ok(browser, "/api/weak-imports/")

    # 15: the page counts its sources for the pager
    flat_queries(grow=grow, read=read, count=15)


def test_version_diff(browser, judged, curator, flat_queries):
    campaign, add = judged
    rule = f.aligned_rule(campaign, curator, name="growing", validation_fraction=0)
    built = [dataset_version_build(rule=rule, built_by=curator)[0]]

    def grow(n):
        add(n)
        built.append(dataset_version_build(rule=rule, built_by=curator)[0])

    def read():
        old, new = built[0].pk, built[-1].pk
        get_ok(browser, f"/datasets/versions/{old}/diff/{new}/")
        get_ok(browser, f"/api/dataset-versions/{old}/diff/{new}/")

    flat_queries(grow=grow, read=read, count=14)


def test_export_progress(browser, published, flat_queries):
    ids = []

    def grow(n):
        published(n)
        ids[:] = DatasetExport.objects.values_list("pk", flat=True)

    flat_queries(
        grow=grow,
        read=lambda: get_ok(
            browser, f"/api/dataset-exports/progress/?ids={','.join(map(str, ids))}"
        ),
        count=4,
    )
