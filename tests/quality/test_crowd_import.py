"""The crowd imports store their candidates through generation's ``candidates_import``: one
imported sticker per external item, named by the item, without a file."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Campaign, ItemCandidate
from annotation.quality.crowd_formats import CrowdComparisons, CrowdLabels
from annotation.quality.services.crowd_import import crowd_comparisons_import, crowd_labels_import
from generation.models import Candidate

pytestmark = pytest.mark.django_db

STORED = (
    "kind",
    "origin",
    "batch_id",
    "raw_prompt",
    "file",
    "frames_prefix",
    "width",
    "height",
    "frame_count",
    "file_size",
    "sha256",
    "params",
    "weak_labels",
    "import_source",
    "model_version__name",
)


def _stored(campaign) -> list[tuple]:
    ids = ItemCandidate.objects.filter(item__campaign=campaign).values_list("candidate_id")
    return list(Candidate.objects.filter(pk__in=ids).order_by("id").values_list(*STORED))


def _labels() -> CrowdLabels:
    labels = CrowdLabels(truth={"q1": "yes"})
    long_name = "x" * 5003
    for item, worker, answer in [
        ("q1", "w1", "yes"),
        ("q1", "w2", "no"),
        (long_name, "w1", "no"),
        ("q1", "w1", "no"),
    ]:
        labels.add(item, worker, answer)
    return labels


def test_a_label_import_stores_one_candidate_per_item_through_the_generation_service():
    report = crowd_labels_import(
        name="Snow toy", labels=_labels(), source="snow-toy", question_type="binary"
    )

    assert (report.items, report.gold_items, report.judgments, report.duplicates_dropped) == (
        2,
        1,
        3,
        1,
    )
    row = ("sticker", "imported", None, "q1", "", "", 1, 1, 1, 0, "", {}, {}, "snow-toy", None)
    assert _stored(report.campaign) == [row, (*row[:3], "x" * 5000, *row[4:])]


def test_a_comparison_import_stores_one_candidate_per_prompt_and_system():
    comparisons = CrowdComparisons()
    comparisons.add("alpha", "beta", "left", worker="w1", prompt="a cat")
    comparisons.add("beta", "alpha", "tie", worker="w2", prompt="a cat")
    comparisons.add("alpha", "gamma", "right", worker="w1")

    report = crowd_comparisons_import(name="Toy pairs", comparisons=comparisons, source="toy")

    assert (report.items, report.judgments, report.model_versions) == (2, 3, 3)
    common = ("sticker", "imported", None)
    rest = ("", "", 1, 1, 1, 0, "", {}, {}, "toy")
    assert _stored(report.campaign) == [
        (*common, "a cat · alpha", *rest, "toy-alpha"),
        (*common, "a cat · beta", *rest, "toy-beta"),
        (*common, "alpha", *rest, "toy-alpha"),
        (*common, "gamma", *rest, "toy-gamma"),
    ]


def test_an_import_without_a_source_stores_nothing():
    with pytest.raises(ValidationError) as error:
        crowd_labels_import(name="Nameless", labels=_labels(), source=" ", question_type="binary")

    assert error.value.message_dict == {"source": ["Name the import source."]}
    assert not Campaign.objects.exists()
    assert not Candidate.objects.exists()
