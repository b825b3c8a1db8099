"""Column-wise inserts through COPY, fed a chunk at a time: the rows come back exactly as given,
and a row the database refuses in a later chunk leaves nothing of the earlier ones. The
consensus table, written a few million rows at a time, keeps only the indexes its readers use."""

import numpy as np
import pytest
from django.db import connection, transaction
from psycopg2.errors import CheckViolation

from annotation.quality import bulk
from annotation.quality.models import ConsensusResult
from tests import factories as f

pytestmark = pytest.mark.django_db

COLUMNS = ("item_id", "question_key", "label", "confidence", "is_tie", "tied_labels", "mean")


QUESTIONS = [{"key": "ok", "type": "binary", "label": "OK?"}]


def _columns(campaign, item_ids: list[int], confidence: list[float]) -> dict[str, object]:
    return {
        "campaign_id": campaign.pk,
        "item_id": np.array(item_ids, dtype=np.int64),
        "candidate_id": None,
        "question_key": ["tab\there", "back\\slash", "line\nend", "carriage\rreturn", "plain"],
        "method": "majority",
        "label": ['"yes"', None, '"no"', None, "3"],
        "confidence": np.array(confidence),
        "n_judgments": np.array([3, 3, 5, 2, 1], dtype=np.int64),
        "is_tie": np.array([False, True, False, True, False]),
        "tied_labels": ["[]", '["a", "b"]', "[]", "[1, 2]", "[]"],
        "mean": np.array([np.nan, 1.5, np.nan, 2.0, 3.0]),
        "computed_at": "2026-12-07T12:00:00+00:00",
    }


def test_rows_go_in_chunk_by_chunk_exactly_as_given():
    campaign = f.campaign(questions=QUESTIONS)
    item_ids = [i.pk for i in f.items(campaign, 5)]
    with transaction.atomic():
        stored = bulk.insert_columns(
            ConsensusResult._meta.db_table,
            _columns(campaign, item_ids, [0.5, 1.0, 0.25, 0.0, 0.75]),
            chunk_rows=2,
        )
    assert stored == 5
    assert list(ConsensusResult.objects.order_by("item_id").values_list(*COLUMNS)) == [
        (item_ids[0], "tab\there", "yes", 0.5, False, [], None),
        (item_ids[1], "back\\slash", None, 1.0, True, ["a", "b"], 1.5),
        (item_ids[2], "line\nend", "no", 0.25, False, [], None),
        (item_ids[3], "carriage\rreturn", None, 0.0, True, [1, 2], 2.0),
        (item_ids[4], "plain", 3, 0.75, False, [], 3.0),
    ]


@pytest.mark.postgresql
def test_a_row_refused_in_the_last_chunk_leaves_nothing():
    campaign = f.campaign(questions=QUESTIONS)
    item_ids = [i.pk for i in f.items(campaign, 5)]
    with (
        pytest.raises(CheckViolation, match="consensus_confidence_range"),
        transaction.atomic(),
    ):
        bulk.insert_columns(
            ConsensusResult._meta.db_table,
            _columns(campaign, item_ids, [0.5, 1.0, 0.25, 0.0, 1.5]),
            chunk_rows=2,
        )
    assert ConsensusResult.objects.count() == 0


@pytest.mark.postgresql
def test_the_consensus_table_has_no_index_its_readers_do_not_use():
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, ConsensusResult._meta.db_table)
    assert sorted(
        (name.removeprefix("quality_consensusresult_"), tuple(c["columns"]))
        for name, c in found.items()
        if c["index"] or c["primary_key"]
    ) == [
        ("consensus_by_candidate", ("candidate_id",)),
        ("consensus_by_method", ("campaign_id", "question_key", "method")),
        ("consensus_unique_item", ("item_id", "question_key", "method")),
        ("consensus_unique_item_candidate", ("item_id", "candidate_id", "question_key", "method")),
        ("item_id_c461053b", ("item_id",)),
        ("pkey", ("id",)),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'consensus_by_candidate'")
        assert cursor.fetchone()[0].endswith("WHERE (candidate_id IS NOT NULL)")
