"""Imported candidates go through one service: bulk, checked, and stored once per file."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from generation.models import Candidate, ModelVersion
from generation.services.candidates import ImportedCandidate, candidates_import

pytestmark = pytest.mark.django_db

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64


def _file(sha: str, **fields) -> ImportedCandidate:
    return ImportedCandidate(
        kind="sticker",
        raw_prompt=f"caption {sha[0]}",
        width=64,
        height=48,
        file=f"imports/1/{sha[:2]}/{sha}.png",
        sha256=sha,
        file_size=123,
        params={"import_id": 7},
        weak_labels={"style": "flat"},
        **fields,
    )


def _stored(source: str) -> list[tuple]:
    return list(
        Candidate.objects.filter(import_source=source)
        .order_by("pk")
        .values_list("origin", "kind", "batch_id", "raw_prompt", "sha256", "file", "params")
    )


def test_rows_without_a_hash_are_inserted_in_order_with_their_ids():
    version = ModelVersion.objects.create(name="crowd-sys-a", kind="image", uri="import:c/a")
    rows = [
        ImportedCandidate(kind="sticker", raw_prompt="item-1", width=1, height=1),
        ImportedCandidate(
            kind="sticker", raw_prompt="item-2", width=1, height=1, model_version=version
        ),
    ]

    result = candidates_import(source="crowd", rows=rows)

    assert [c.raw_prompt for c in result.candidates] == ["item-1", "item-2"]
    assert result.created == result.candidates
    assert all(c.pk is not None for c in result.candidates)
    assert [c.model_version_id for c in result.candidates] == [None, version.pk]
    assert _stored("crowd") == [
        ("imported", "sticker", None, "item-1", "", "", {}),
        ("imported", "sticker", None, "item-2", "", "", {}),
    ]


def test_rows_without_a_hash_are_inserted_again_by_a_second_call():
    rows = [ImportedCandidate(kind="sticker", raw_prompt="item-1", width=1, height=1)]

    candidates_import(source="crowd", rows=rows)
    candidates_import(source="crowd", rows=rows)

    assert Candidate.objects.filter(import_source="crowd").count() == 2


def test_a_file_is_stored_once_per_source():
    first = candidates_import(source="weak", rows=[_file(SHA_A), _file(SHA_B)])

    again = candidates_import(source="weak", rows=[_file(SHA_C), _file(SHA_A)])

    assert [c.sha256 for c in again.candidates] == [SHA_C, SHA_A]
    assert [c.sha256 for c in again.created] == [SHA_C]
    assert again.candidates[1].pk == first.candidates[0].pk
    assert _stored("weak") == [
        (
            "imported",
            "sticker",
            None,
            "caption a",
            SHA_A,
            f"imports/1/aa/{SHA_A}.png",
            {"import_id": 7},
        ),
        (
            "imported",
            "sticker",
            None,
            "caption b",
            SHA_B,
            f"imports/1/bb/{SHA_B}.png",
            {"import_id": 7},
        ),
        (
            "imported",
            "sticker",
            None,
            "caption c",
            SHA_C,
            f"imports/1/cc/{SHA_C}.png",
            {"import_id": 7},
        ),
    ]


def test_the_same_file_may_come_from_two_sources():
    candidates_import(source="weak-1", rows=[_file(SHA_A)])

    result = candidates_import(source="weak-2", rows=[_file(SHA_A)])

    assert len(result.created) == 1
    assert Candidate.objects.filter(sha256=SHA_A).count() == 2


def test_an_animation_keeps_its_frames_and_motion():
    row = ImportedCandidate(
        kind="animation",
        raw_prompt="a waving cat",
        width=64,
        height=64,
        file=f"imports/1/aa/{SHA_A}.webp",
        sha256=SHA_A,
        frames_prefix=f"imports/1/aa/{SHA_A}/",
        frame_count=8,
        file_size=999,
        motion_score=0.25,
        params={"fps": 8},
    )

    (candidate,) = candidates_import(source="clips", rows=[row]).created

    candidate.refresh_from_db()
    assert (
        candidate.kind,
        candidate.frames_prefix,
        candidate.frame_count,
        candidate.file_size,
        candidate.motion_score,
        candidate.params,
    ) == ("animation", f"imports/1/aa/{SHA_A}/", 8, 999, 0.25, {"fps": 8})


def test_the_database_refuses_a_second_row_for_the_same_file():
    candidates_import(source="weak", rows=[_file(SHA_A)])

    with pytest.raises(IntegrityError), transaction.atomic():
        Candidate.objects.create(
            kind="sticker",
            origin="imported",
            raw_prompt="bypass",
            width=1,
            height=1,
            sha256=SHA_A,
            import_source="weak",
        )


def test_invalid_rows_store_nothing_and_are_named():
    animation_model = ModelVersion.objects.create(name="anim", kind="animation", uri="/x")
    rows = [
        _file(SHA_A),
        ImportedCandidate(kind="gif", raw_prompt="x", width=0, height=64),
        _file("ABC"),
        _file(SHA_A),
        ImportedCandidate(
            kind="sticker", raw_prompt="x", width=1, height=1, model_version=animation_model
        ),
    ]

    with pytest.raises(ValidationError) as excinfo:
        candidates_import(source="weak", rows=rows)

    assert excinfo.value.message_dict == {
        "rows": [
            "Row 1: unknown kind 'gif'; use sticker or animation.",
            "Row 1: width and height must be positive integers, not 0 and 64.",
            "Row 2: sha256 must be 64 lowercase hexadecimal digits or empty, not 'ABC'.",
            "Rows 0 and 3 have the same sha256 aaaaaaaaaaaa…; give each file once.",
            "Row 4: model version anim is an animation model; a sticker candidate needs an "
            "image model.",
        ]
    }
    assert Candidate.objects.count() == 0


def test_more_than_five_problems_are_summed_up():
    rows = [ImportedCandidate(kind="sticker", raw_prompt="x", width=0, height=1)] * 7

    with pytest.raises(ValidationError) as excinfo:
        candidates_import(source="", rows=rows)

    assert excinfo.value.message_dict == {
        "source": ["Name the import source."],
        "rows": [
            *(
                f"Row {i}: width and height must be positive integers, not 0 and 1."
                for i in range(5)
            ),
            "… and 2 more problem(s).",
        ],
    }


def test_no_rows_store_nothing():
    result = candidates_import(source="weak", rows=[])

    assert (result.candidates, result.created) == ([], [])
    assert Candidate.objects.count() == 0


def test_a_hashed_import_takes_one_insert_whatever_its_size(django_assert_num_queries):
    rows = [_file(f"{i:064x}") for i in range(50)]

    # savepoint, advisory lock, stored lookup, one INSERT, read back, release
    with django_assert_num_queries(6):
        result = candidates_import(source="weak", rows=rows)

    assert len(result.created) == 50
