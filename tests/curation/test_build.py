"""Rules → preview funnel → immutable versions: exact counts, checksums, rebuilds, diffs."""

import hashlib
import json

import psycopg2
import pytest
from django.db import connection

from generation.models import Candidate
from tests.factories import aligned_rule, sticker_pixels
from training_bridge import curation, versions
from training_bridge.models import (
    AuditEvent,
    CandidateFingerprint,
    DatasetEntry,
    DatasetRule,
    DatasetVersion,
)
from training_bridge.versions import MANIFEST_FORMAT, dataset_version_build, dataset_version_retire

pytestmark = pytest.mark.django_db

T = {"aligned": True, "quality": 4}
F = {"aligned": False, "quality": 2}


@pytest.fixture
def world(make):
    """Eleven alignment candidates, each set up to fall at one stage of the funnel."""
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(1, 4)]
    paused = [make.rater(f"p{i}", campaign, paused=True) for i in range(1, 3)]
    r1, r2, r3 = raters
    c = {}

    def rated(name, prompt, answers_by_rater, **kwargs):
        gold = kwargs.pop("gold", False)
        c[name] = make.sticker(prompt, **kwargs)
        item = make.item(campaign, [c[name]], gold=gold)
        for rater, answers in answers_by_rater:
            make.judge(item, rater, answers)
        return item

    c1_item = rated("c1", "a cat", [(r1, T), (r2, T), (r3, T)])
    rated("c2", "a cat", [(r1, T), (r2, T), (r3, F)])
    rated("c3", "a dog", [(r1, T), (r2, F), (r3, F)])
    rated("c4", "a dog", [(r1, T), (r2, T)], gold=True)
    rated("c5", "a fox", [(paused[0], T), (paused[1], T)])
    rated("c6", "a fox", [(r1, T)])
    c7_item = rated("c7", "an owl", [(r1, T), (r2, F)])
    rated("c8", "held out", [(r1, T), (r2, T), (r3, T)], held_out=True)
    rated("c9", "a cat", [(r1, T), (r2, T), (r3, T)])
    c10_item = rated("c10", "a bee", [(r1, T), (r2, T)], seed=1000)
    near = sticker_pixels(1000)
    near[10, 10, 0] ^= 1
    rated("c11", "a bee", [(r1, T), (r2, T), (r3, T)], pixels=near)
    # a skipped judgment does not count
    r4 = make.rater("r4", campaign)
    make.judge(c10_item, r4, {}, skipped=True)
    return {
        "campaign": campaign,
        "c": c,
        "raters": [*raters, r4],
        "c7_item": c7_item,
        "c1_item": c1_item,
    }


def rule_payload(world, **changes):
    payload = {
        "name": "alignment v1",
        "purpose": "alignment",
        "campaigns": [world["campaign"].pk],
        "conditions": [{"question": "aligned", "labels": [True], "min_confidence": 0.6}],
        "min_judgments": 2,
        "per_prompt_cap": 2,
        "dedup_max_distance": 4,
        "validation_fraction": 0.0,
    }
    payload.update(changes)
    return payload


def create_rule(api, curator, world, **changes):
    response = api(curator).post(
        "/api/dataset-rules/create/", rule_payload(world, **changes), format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_preview_counts_every_condition_and_samples(api, curator, world):
    rule = create_rule(api, curator, world)
    assert rule["kind"] == "image"
    response = api(curator).get(f"/api/dataset-rules/{rule['id']}/preview/")
    assert response.status_code == 200
    body = response.json()
    assert [(s["key"], s["kept"], s["dropped"]) for s in body["stages"]] == [
        ("source", 11, 0),
        ("gold", 10, 1),
        ("paused_only", 9, 1),
        ("min_judgments", 8, 1),
        ("condition_0", 6, 2),
        ("kind", 6, 0),
        ("held_out", 5, 1),
        ("near_duplicate", 4, 1),
        ("per_prompt_cap", 3, 1),
    ]
    assert body["stages"][4]["label"] == "question 'aligned': consensus in true, confidence ≥ 0.6"
    assert (body["entry_count"], body["train_count"], body["validation_count"]) == (3, 3, 0)
    assert body["prompt_count"] == 2
    c = world["c"]
    assert sorted(s["candidate_id"] for s in body["sample"]) == [
        c["c1"].pk,
        c["c9"].pk,
        c["c10"].pk,
    ]
    assert all(s["file_url"].startswith("/media/candidates/test/") for s in body["sample"])
    dropped = {
        d["stage"]: sorted(x["candidate_id"] for x in d["candidates"])
        for d in body["dropped_samples"]
    }
    assert dropped == {
        "gold": [c["c4"].pk],
        "paused_only": [c["c5"].pk],
        "min_judgments": [c["c6"].pk],
        "condition_0": sorted([c["c3"].pk, c["c7"].pk]),
        "held_out": [c["c8"].pk],
        "near_duplicate": [c["c11"].pk],
        "per_prompt_cap": [c["c2"].pk],
    }
    # a preview writes nothing, not even the perceptual hashes it computed
    assert CandidateFingerprint.objects.count() == 0
    assert DatasetVersion.objects.count() == 0


def test_build_is_immutable_reproducible_and_diffable(api, curator, world, make):
    c = world["c"]
    rule = create_rule(api, curator, world)
    client = api(curator)
    first = client.post(f"/api/dataset-rules/{rule['id']}/build/")
    assert first.status_code == 201, first.json()
    version = first.json()["version"]
    assert (version["number"], version["status"], version["entry_count"]) == (1, "draft", 3)
    entries = client.get(f"/api/dataset-versions/{version['id']}/entries/").json()["results"]
    assert [
        (e["candidate"], e["label"], e["confidence"], e["labels"], e["split"], e["caption"])
        for e in entries
    ] == [
        (c["c1"].pk, True, 1.0, {"aligned": True}, "train", "a cat"),
        (c["c9"].pk, True, 1.0, {"aligned": True}, "train", "a cat"),
        (c["c10"].pk, True, 1.0, {"aligned": True}, "train", "a bee"),
    ]
    e0 = entries[0]
    assert (e0["file_sha256"], e0["model_version_name"], e0["seed"], e0["prompt_text"]) == (
        c["c1"].sha256,
        "sticker-base",
        c["c1"].seed,
        "a cat",
    )
    assert e0["n_judgments"] == 3 and e0["teacher"] == "" and e0["source_candidate"] is None
    # when: rebuilt on the same judgments → the same version, same checksum, nothing new
    again = client.post(f"/api/dataset-rules/{rule['id']}/build/")
    assert again.status_code == 200
    assert again.json() == {"created": False, "version": again.json()["version"]}
    assert again.json()["version"]["id"] == version["id"]
    assert again.json()["version"]["manifest_sha256"] == version["manifest_sha256"]
    assert DatasetVersion.objects.count() == 1 and DatasetEntry.objects.count() == 3

    # when: new judgments arrive, the next build is version 2
    r1, r2, r3, r4 = world["raters"]
    make.judge(world["c7_item"], r3, T)  # the tie becomes 2 of 3: an owl joins
    make.judge(world["c1_item"], r4, F)  # 3 of 4 now: its confidence falls
    second = client.post(f"/api/dataset-rules/{rule['id']}/build/")
    assert second.status_code == 201
    v2 = second.json()["version"]
    assert (v2["number"], v2["entry_count"]) == (2, 4)
    assert v2["manifest_sha256"] != version["manifest_sha256"]
    diff = client.get(f"/api/dataset-versions/{version['id']}/diff/{v2['id']}/").json()
    assert (diff["added"], diff["removed"], diff["unchanged_count"]) == ([c["c7"].pk], [], 2)
    assert diff["changed"] == [
        {
            "candidate_id": c["c1"].pk,
            "fields": ["confidence"],
            "old": {
                "label": True,
                "confidence": 1.0,
                "labels": {"aligned": True},
                "split": "train",
                "caption": "a cat",
            },
            "new": {
                "label": True,
                "confidence": 0.75,
                "labels": {"aligned": True},
                "split": "train",
                "caption": "a cat",
            },
        }
    ]
    # version 1 is untouched
    assert DatasetEntry.objects.filter(version_id=version["id"]).count() == 3
    assert list(AuditEvent.objects.order_by("id").values_list("action", "version_id")) == [
        ("build", version["id"]),
        ("build", v2["id"]),
    ]


def test_same_rule_and_judgments_give_same_checksum_after_retire(api, curator, world):
    rule = create_rule(api, curator, world)
    client = api(curator)
    v1 = client.post(f"/api/dataset-rules/{rule['id']}/build/").json()["version"]
    assert client.post(f"/api/dataset-versions/{v1['id']}/retire/").status_code == 200
    v2 = client.post(f"/api/dataset-rules/{rule['id']}/build/").json()["version"]
    assert v2["number"] == 2
    assert v2["manifest_sha256"] == v1["manifest_sha256"]


def test_a_rule_that_selects_nothing_builds_nothing(api, curator, world):
    rule = create_rule(
        api,
        curator,
        world,
        conditions=[
            {"question": "aligned", "labels": [True], "min_confidence": 1.0},
            {"question": "quality", "min_mean": 5},
        ],
    )
    response = api(curator).post(f"/api/dataset-rules/{rule['id']}/build/")
    assert response.status_code == 400
    assert response.json() == {
        "rule": [
            "The rule selects nothing: 'question 'quality': mean ≥ 5' dropped the last 5 "
            "candidate(s)."
        ]
    }
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_a_build_failing_half_way_leaves_no_version_and_no_rows(api, curator, world, settings):
    # given: a kept candidate's file is corrupt, found only when hashing for near-duplicates
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    rule = create_rule(api, curator, world)
    c1 = world["c"]["c1"]
    default_storage.delete(c1.file)
    default_storage.save(c1.file, ContentFile(b"not a png"))
    response = api(curator).post(f"/api/dataset-rules/{rule['id']}/build/")
    assert response.status_code == 400
    [message] = response.json()["dedup_max_distance"]
    assert message.startswith(f"Candidate {c1.pk}'s file {c1.file} cannot be read")
    assert DatasetVersion.objects.count() == 0
    assert DatasetEntry.objects.count() == 0
    assert CandidateFingerprint.objects.count() == 0


def test_mean_thresholds_and_caption_template(api, curator, world):
    rule = create_rule(
        api,
        curator,
        world,
        name="style-ish",
        conditions=[{"question": "quality", "min_mean": 3.5}],
        per_prompt_cap=None,
        dedup_max_distance=None,
        caption_source="template",
        caption_template="a sticker of {prompt}",
        purpose="style",
    )
    body = api(curator).get(f"/api/dataset-rules/{rule['id']}/preview/").json()
    c = world["c"]
    # mean quality ≥ 3.5: all-T (4.0) and T,T (4.0) and T,T,F (3.33 → out) ...
    kept = sorted(s["candidate_id"] for s in body["sample"])
    assert kept == sorted([c["c1"].pk, c["c9"].pk, c["c10"].pk, c["c11"].pk])
    assert {s["caption"] for s in body["sample"]} == {"a sticker of a cat", "a sticker of a bee"}


def test_publish_then_retire_and_conflicts(api, curator, world):
    rule = create_rule(api, curator, world)
    client = api(curator)
    version = client.post(f"/api/dataset-rules/{rule['id']}/build/").json()["version"]
    published = client.post(f"/api/dataset-versions/{version['id']}/publish/")
    assert published.status_code == 200
    assert published.json()["status"] == "published"
    assert published.json()["published_by"] == "curator"
    again = client.post(f"/api/dataset-versions/{version['id']}/publish/")
    assert again.status_code == 409
    assert again.json() == {"detail": "Version alignment v1 v1 is already published."}
    assert (
        client.post(f"/api/dataset-versions/{version['id']}/retire/").json()["status"] == "retired"
    )
    republish = client.post(f"/api/dataset-versions/{version['id']}/publish/")
    assert republish.status_code == 409
    assert list(AuditEvent.objects.order_by("id").values_list("action", "actor__username")) == [
        ("build", "curator"),
        ("publish", "curator"),
        ("retire", "curator"),
    ]


def test_raters_and_engineers_cannot_build_or_publish(api, rater, engineer, curator, world):
    rule = create_rule(api, curator, world)
    assert api(rater).get("/api/dataset-rules/").status_code == 403
    assert api(rater).get(f"/api/dataset-rules/{rule['id']}/preview/").status_code == 403
    assert api(engineer).post(f"/api/dataset-rules/{rule['id']}/build/").status_code == 403
    assert api(engineer).get(f"/api/dataset-rules/{rule['id']}/preview/").status_code == 200
    assert DatasetVersion.objects.count() == 0


def test_unsaved_preview_takes_the_create_input(api, curator, world):
    payload = rule_payload(world)
    del payload["name"]
    response = api(curator).post("/api/dataset-rules/preview/", payload, format="json")
    assert response.status_code == 200
    assert response.json()["entry_count"] == 3


def test_evaluation_rules_take_only_held_out_prompts(api, curator, world):
    rule = create_rule(
        api,
        curator,
        world,
        name="eval",
        purpose="evaluation",
        kind="image",
        per_prompt_cap=None,
        dedup_max_distance=None,
    )
    body = api(curator).get(f"/api/dataset-rules/{rule['id']}/preview/").json()
    assert body["stages"][-1] == {
        "key": "held_out",
        "label": "from a held-out prompt set",
        "kept": 1,
        "dropped": 5,
    }
    assert [s["candidate_id"] for s in body["sample"]] == [world["c"]["c8"].pk]


# Builds stream their manifest in chunks: the same rows and checksum whatever the chunk size,
# and a failure in a later chunk leaves nothing of the earlier ones.


def _line(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def checksum_of_stored_rows(version: DatasetVersion) -> str:
    """The manifest checksum as documented, recomputed from the stored rows in one piece."""
    digest = hashlib.sha256()
    digest.update(
        _line({"format": MANIFEST_FORMAT, "purpose": version.purpose, "kind": version.kind}) + b"\n"
    )
    for e in version.entries.order_by("position"):
        canonical = [
            e.candidate_id,
            e.split,
            e.caption,
            e.file_sha256,
            e.label,
            e.confidence,
            e.labels,
            e.confidences,
            e.scores,
            e.model_version_name,
            e.seed,
            e.prompt_text,
            e.teacher,
            e.source_candidate_id,
            e.frame_count,
            e.motion_score,
        ]
        digest.update(_line(canonical) + b"\n")
    return digest.hexdigest()


def stored_rows(version: DatasetVersion) -> list[tuple]:
    return list(
        version.entries.order_by("position").values_list(
            "position", "candidate_id", "split", "caption", "file_key", "labels", "confidences"
        )
    )


def test_a_version_not_a_multiple_of_the_chunk_is_stored_whole_with_the_same_checksum(
    api, curator, world, monkeypatch
):
    # given: a version built in one chunk, then retired
    c = world["c"]
    rule = DatasetRule.objects.get(pk=create_rule(api, curator, world)["id"])
    whole, created = dataset_version_build(rule=rule)
    assert created and whole.entry_count == 3
    dataset_version_retire(version=whole)
    # when: the same rule is built again two rows at a time (chunks of 2 and 1)
    monkeypatch.setattr(curation, "ENTRY_CHUNK", 2)
    chunked, created = dataset_version_build(rule=rule)
    # then: the same rows in the same positions, and the same checksum, the documented one
    assert created and chunked.number == 2
    assert stored_rows(chunked) == [
        (0, c["c1"].pk, "train", "a cat", c["c1"].file, {"aligned": True}, {"aligned": 1.0}),
        (1, c["c9"].pk, "train", "a cat", c["c9"].file, {"aligned": True}, {"aligned": 1.0}),
        (2, c["c10"].pk, "train", "a bee", c["c10"].file, {"aligned": True}, {"aligned": 1.0}),
    ]
    assert [r[1:] for r in stored_rows(chunked)] == [r[1:] for r in stored_rows(whole)]
    assert chunked.manifest_sha256 == whole.manifest_sha256 == checksum_of_stored_rows(chunked)
    assert (chunked.entry_count, chunked.train_count, chunked.validation_count) == (3, 3, 0)


def test_a_rebuild_of_unchanged_input_in_chunks_keeps_none_of_its_rows(
    api, curator, world, monkeypatch
):
    monkeypatch.setattr(curation, "ENTRY_CHUNK", 2)
    rule = DatasetRule.objects.get(pk=create_rule(api, curator, world)["id"])
    first, created = dataset_version_build(rule=rule)
    assert created
    # when: rebuilt on the same judgments (the rows are written, then rolled back)
    again, created = dataset_version_build(rule=rule)
    # then: the live version is returned and nothing new is left
    assert (again.pk, created) == (first.pk, False)
    assert DatasetVersion.objects.count() == 1
    assert DatasetEntry.objects.count() == 3
    assert list(AuditEvent.objects.values_list("action", "version_id")) == [("build", first.pk)]


@pytest.mark.postgresql
def test_a_build_failing_in_a_later_chunk_leaves_no_version_and_no_rows(
    api, curator, world, monkeypatch
):
    # given: chunks of 2, and the third kept candidate's file extension too long to store
    monkeypatch.setattr(curation, "ENTRY_CHUNK", 2)
    rule = DatasetRule.objects.get(
        pk=create_rule(api, curator, world, dedup_max_distance=None)["id"]
    )
    Candidate.objects.filter(pk=world["c"]["c10"].pk).update(file="candidates/c10.longerthan8")
    # when: the second chunk fails after the first was stored
    with pytest.raises(psycopg2.DataError, match="value too long for type character varying"):
        dataset_version_build(rule=rule)
    # then
    assert DatasetVersion.objects.count() == 0
    assert DatasetEntry.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_a_candidate_in_several_items_counts_once_per_stage_and_keeps_its_best_rating(
    make, curator
):
    # given: x and z rated in two items each, y in two items that both fail the condition
    campaign = make.campaign(name="repeats")
    raters = [make.rater(f"r{i}", campaign) for i in range(3)]
    x, y, z = (make.sticker(text) for text in ("a cat", "a dog", "a fox"))

    def rated(candidate, answers):
        item = make.item(campaign, [candidate])
        for rater, rater_answers in zip(raters, answers, strict=True):
            make.judge(item, rater, rater_answers)

    rated(x, (T, T, F))
    rated(y, (F, F, T))
    rated(z, (F, F, F))
    rated(x, (T, T, T))
    rated(y, (T, F, F))
    rated(z, (T, T, F))
    rule = aligned_rule(campaign, curator, validation_fraction=0)
    # when
    version, created = dataset_version_build(rule=rule)
    # then: every stage counts candidates, not items; y falls once, whole
    assert created
    assert [(s["key"], s["kept"], s["dropped"]) for s in version.stage_counts] == [
        ("source", 3, 0),
        ("gold", 3, 0),
        ("paused_only", 3, 0),
        ("min_judgments", 3, 0),
        ("condition_0", 2, 1),
        ("kind", 2, 0),
        ("held_out", 2, 0),
    ]
    # x keeps its unanimous item, z the only item it passed in
    assert list(
        version.entries.order_by("position").values_list(
            "candidate_id", "confidence", "confidences", "n_judgments"
        )
    ) == [(x.pk, 1.0, {"aligned": 1.0}, 3), (z.pk, 0.666667, {"aligned": 0.666667}, 3)]


@pytest.mark.postgresql
def test_a_large_build_refreshes_the_entries_statistics_once_committed(
    api, curator, world, monkeypatch, django_capture_on_commit_callbacks
):
    # given: a threshold that the world's three entries reach
    monkeypatch.setattr(versions, "ANALYZE_FROM_ENTRIES", 3)
    rule = DatasetRule.objects.get(pk=create_rule(api, curator, world)["id"])
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        version, created = dataset_version_build(rule=rule)
    # then: the table was analyzed after the commit, and PostgreSQL counts its rows
    assert created and version.entry_count == 3
    assert versions._analyze_entries in callbacks
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE relname = %s", [DatasetEntry._meta.db_table]
        )
        assert cursor.fetchone() == (3.0,)


def test_a_small_build_leaves_the_entries_statistics_to_autovacuum(
    api, curator, world, django_capture_on_commit_callbacks
):
    rule = DatasetRule.objects.get(pk=create_rule(api, curator, world)["id"])
    with django_capture_on_commit_callbacks() as callbacks:
        version, created = dataset_version_build(rule=rule)
    assert created and version.entry_count == 3 < versions.ANALYZE_FROM_ENTRIES
    assert versions._analyze_entries not in callbacks
