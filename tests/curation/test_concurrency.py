"""Many builds of one rule at once: one version, numbered once, every caller gets it."""

import threading

import pytest
from django.db import connection

from training_bridge import services
from training_bridge.models import DatasetEntry, DatasetVersion

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_builds_make_one_version(make, curator):
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(2)]
    for prompt in ["a cat", "a dog", "a frog", "an owl", "a bee"]:
        item = make.item(campaign, [make.sticker(prompt)])
        for rater in raters:
            make.judge(item, rater, {"aligned": True, "quality": 3})
    rule = services.dataset_rule_create(
        values={
            "name": "align",
            "purpose": "alignment",
            "campaigns": [campaign],
            "conditions": [{"question": "aligned", "labels": [True]}],
        },
        created_by=curator,
    )
    results, errors = [], []
    barrier = threading.Barrier(6)

    def build():
        try:
            barrier.wait()
            results.append(services.dataset_version_build(rule=rule, built_by=curator))
        except Exception as exc:  # any failure is asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=build) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    version = DatasetVersion.objects.get()
    assert {v.pk for v, _ in results} == {version.pk}
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert (version.number, DatasetEntry.objects.count()) == (1, 5)
