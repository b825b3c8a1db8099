"""Many builds of one rule at once: one version, numbered once, every caller gets it."""

import functools

import pytest

from tests.conftest import run_at_once
from training_bridge.exports.create import dataset_exports_create
from training_bridge.exports.run import dataset_exports_run
from training_bridge.models import DatasetEntry, DatasetVersion
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


def test_concurrent_builds_make_one_version(make, curator):
    rule = make.alignment_rule(["a cat", "a dog", "a frog", "an owl", "a bee"], curator)
    results, errors = run_at_once(
        [lambda: dataset_version_build(rule=rule, built_by=curator)] * 6, timeout=60
    )
    assert errors == []
    version = DatasetVersion.objects.get()
    assert {v.pk for v, _ in results} == {version.pk}
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert (version.number, DatasetEntry.objects.count()) == (1, 5)


def test_parts_finishing_at_once_finish_the_export_once(make, curator, settings):
    """Every part of two exports (and each part twice, as a redelivery would) at once on
    PostgreSQL: each export succeeds once, with every part's files."""
    from training_bridge.models import AuditEvent, DatasetExport

    rule = make.alignment_rule(
        ["a cat", "a dog", "a frog", "an owl", "a bee", "a fox", "a yak", "an elk"],
        curator,
        raters=1,
        min_judgments=1,
    )
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    settings.DATASET_EXPORT_PART_ENTRIES = 2
    exports = dataset_exports_create(
        version=version, export_formats=["imagefolder", "parquet"], requested_by=curator
    )
    ids = [e.pk for e in exports]
    runs = [part for part in range(4) for _ in range(2)]
    _, errors = run_at_once(
        [functools.partial(dataset_exports_run, export_ids=ids, part=part) for part in runs],
        timeout=120,
    )
    assert errors == []
    # imagefolder: a tar per part; Parquet: the card and a file per split and part with entries
    splits_and_parts = {(s, p // 2) for s, p in version.entries.values_list("split", "position")}
    files = {"imagefolder": 4, "parquet": 1 + len(splits_and_parts)}
    for export in DatasetExport.objects.filter(pk__in=ids):
        assert (export.status, export.parts, export.done) == ("succeeded", 4, 8)
        assert len(export.files) == files[export.format]
        assert sorted(export.part_results) == ["0", "1", "2", "3"]
    succeeded = AuditEvent.objects.filter(export_id__in=ids, action="export_succeeded")
    assert sorted(succeeded.values_list("export_id", flat=True)) == sorted(ids)
