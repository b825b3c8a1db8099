"""Imports of external crowd data: labels and pairwise comparisons from another platform."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import (
    Campaign,
    CampaignKind,
    Item,
    ItemCandidate,
    Judgment,
)
from annotation.quality import bulk
from annotation.quality.models import (
    QualityPolicy,
)
from annotation.services import campaigns, items
from generation.models import Candidate, CandidateKind, ModelKind, ModelVersion
from generation.services.candidates import ImportedCandidate, candidates_import
from generation.services.model_versions import model_version_register

IMPORT_TYPES = ("single_choice", "binary", "likert")
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n"})
IMPORT_SHORTCUTS = "123456789acdehijklmoqrtvwxyz"


@dataclass
class ImportReport:
    campaign: Campaign
    items: int
    gold_items: int
    judgments: int
    raters: int
    duplicates_dropped: int = 0
    model_versions: int = 0


def _answer_values(question_type: str, answers: set[str]) -> tuple[dict[str, object], list[str]]:
    """Map answer strings to schema values; errors for strings the type cannot take."""
    from annotation.schema import MAX_OPTIONS, VALUE_RE

    mapping: dict[str, object] = {}
    bad: list[str] = []
    for answer in sorted(answers):
        word = answer.strip().lower()
        if question_type == "binary":
            if word in TRUE_WORDS or word in FALSE_WORDS:
                mapping[answer] = word in TRUE_WORDS
            else:
                bad.append(answer)
        elif question_type == "likert":
            if word.isdigit() and 1 <= int(word) <= 5:
                mapping[answer] = int(word)
            else:
                bad.append(answer)
        elif VALUE_RE.match(word):
            mapping[answer] = word
        else:
            bad.append(answer)
    errors = []
    if bad:
        errors.append(
            f"{len(bad)} answer(s) do not fit a {question_type} question, e.g. {bad[0]!r}."
        )
    if question_type == "single_choice" and len(set(mapping.values())) > MAX_OPTIONS:
        errors.append(
            f"A single-choice question takes at most {MAX_OPTIONS} options, not "
            f"{len(set(mapping.values()))}."
        )
    if question_type == "single_choice" and len(set(mapping.values())) < 2:
        errors.append("A single-choice question needs at least two different answers.")
    return mapping, errors


def _import_question(key: str, label: str, question_type: str, values: list) -> dict:
    question = {"key": key, "type": question_type, "label": label}
    if question_type == "single_choice":
        ordered = sorted(
            set(values),
            key=lambda v: (not str(v).isdigit(), int(v) if str(v).isdigit() else 0, str(v)),
        )
        question["options"] = [
            {"value": v, "label": str(v), "shortcut": IMPORT_SHORTCUTS[i]}
            for i, v in enumerate(ordered)
        ]
    return question


def _slug(text: str) -> str:
    from django.utils.text import slugify

    return slugify(text)[:60] or "x"


def _import_raters(source: str, workers: list[str]) -> dict[str, int]:
    """One user per external worker, ``crowd-<source>-<worker>``, who cannot log in."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    names = {w: f"crowd-{_slug(source)}-{w}"[:150] for w in dict.fromkeys(workers)}
    # "!..." is Django's unusable password: no login, so no password to validate.
    user_model.objects.bulk_create(
        [user_model(username=name, password="!imported") for name in names.values()],
        batch_size=2000,
        ignore_conflicts=True,
    )
    ids = dict(
        user_model.objects.filter(username__in=list(names.values())).values_list("username", "id")
    )
    return {w: ids[name] for w, name in names.items()}


def _import_candidates(
    *, source: str, keys: list[str], model_versions: list[ModelVersion] | None = None
) -> list[Candidate]:
    """One imported sticker candidate per external item, in order. A crowd file names items but
    holds no images: the rows keep the name as their prompt, no file and a 1×1 size, so every
    import inserts its own rows (no ``sha256`` to find earlier ones by)."""
    return candidates_import(
        source=source,
        rows=[
            ImportedCandidate(
                kind=CandidateKind.STICKER,
                raw_prompt=key[:5000],
                width=1,
                height=1,
                model_version=model_versions[i] if model_versions else None,
            )
            for i, key in enumerate(keys)
        ],
    ).candidates


def _judgments_insert(*, campaign: Campaign, item_ids, rater_ids, answers_json, now) -> int:
    import uuid

    n = len(item_ids)
    return bulk.insert_columns(
        Judgment._meta.db_table,
        {
            "item_id": np.asarray(item_ids, dtype=np.int64),
            "rater_id": np.asarray(rater_ids, dtype=np.int64),
            "campaign_id": campaign.pk,
            "answers": np.asarray(answers_json, dtype=object),
            # Imported data carries no timing; 0 s marks it (speed checks are off on imports).
            "seconds_on_item": np.zeros(n),
            "client_id": np.array(
                [str(uuid.uuid4()) if bulk.is_postgres() else uuid.uuid4().hex for _ in range(n)],
                dtype=object,
            ),
            "skipped": False,
            "skip_reason": "",
            "excluded": False,
            "created_at": now.isoformat(),
        },
    )


def _item_counts_sync(campaign: Campaign) -> None:
    """Set each item's judgment count from its rows, raising targets that must hold them."""
    items, judgments = Item._meta.db_table, Judgment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {items} SET judgment_count = sub.n, overlap_target = CASE"
            " WHEN overlap_target < sub.n THEN sub.n ELSE overlap_target END"
            f" FROM (SELECT item_id, COUNT(*) AS n FROM {judgments} WHERE campaign_id = %s"
            f" AND NOT skipped GROUP BY item_id) AS sub WHERE {items}.id = sub.item_id",
            [campaign.pk],
        )


def _import_campaign(
    *, name: str, kind: str, question: dict, counts: list[int], source: str, created_by
) -> Campaign:
    modal = max(set(counts), key=counts.count) if counts else 1
    overlap = min(max(modal, 1), 50)
    campaign = campaigns.campaign_create(
        name=name,
        kind=kind,
        question_schema=[question],
        overlap=overlap,
        max_overlap=min(max(max(counts, default=1), overlap), 50),
        guidelines=f"Imported from {source}.",
        created_by=created_by,
    )
    # Imported judgments carry no timing (0 s): no automatic pauses, no speed floor.
    QualityPolicy.objects.create(campaign=campaign, auto_pause=False, speed_floor_seconds=0.0)
    return campaign


def _import_finish(campaign: Campaign) -> None:
    _item_counts_sync(campaign)
    # Imported judgments are history: nobody rates this campaign.
    campaigns.campaign_close(campaign=campaign)


@transaction.atomic
def crowd_labels_import(
    *,
    name: str,
    labels,
    source: str,
    question_type: str = "single_choice",
    question_key: str = "label",
    question_label: str = "Label",
    created_by: AbstractBaseUser | None = None,
) -> ImportReport:
    """Load external judgments (``crowd_formats.CrowdLabels``) as a closed single-candidate
    campaign: one imported candidate and item per external item, one user per worker, one
    judgment per (item, worker) (a repeat is dropped and counted), and the known answers as gold.
    ValidationError (nothing stored) when the answers do not fit the question type."""
    errors: dict[str, list[str]] = {}
    if question_type not in IMPORT_TYPES:
        errors["question_type"] = [f"Use one of {', '.join(IMPORT_TYPES)}, not {question_type!r}."]
    if not len(labels):
        errors["file"] = ["The file holds no judgments."]
    if errors:
        raise ValidationError(errors)
    mapping, problems = _answer_values(
        question_type, set(labels.answers) | set(labels.truth.values())
    )
    if problems:
        raise ValidationError({"file": problems})
    seen: set[tuple[str, str]] = set()
    rows = []
    for item, worker, answer in zip(labels.items, labels.workers, labels.answers, strict=True):
        if (item, worker) in seen:
            continue
        seen.add((item, worker))
        rows.append((item, worker, mapping[answer]))
    item_keys = list(dict.fromkeys(r[0] for r in rows))
    per_item: dict[str, int] = defaultdict(int)
    for item, _, _ in rows:
        per_item[item] += 1
    question = _import_question(question_key, question_label, question_type, list(mapping.values()))
    campaign = _import_campaign(
        name=name,
        kind=CampaignKind.SINGLE,
        question=question,
        counts=list(per_item.values()),
        source=source,
        created_by=created_by,
    )
    candidates = _import_candidates(source=source, keys=item_keys)
    gold_keys = [k for k in item_keys if k in labels.truth]
    plain_keys = [k for k in item_keys if k not in labels.truth]
    by_key = dict(zip(item_keys, candidates, strict=True))
    item_of: dict[str, int] = {}
    for keys, gold in ((gold_keys, True), (plain_keys, False)):
        if not keys:
            continue
        made = items.campaign_items_add(
            campaign=campaign,
            candidate_groups=[[by_key[k]] for k in keys],
            seed=0,
            gold_answers=[{question_key: mapping[labels.truth[k]]} for k in keys] if gold else None,
        )
        item_of.update({k: item.pk for k, item in zip(keys, made, strict=True)})
    raters = _import_raters(source, [r[1] for r in rows])
    now = timezone.now()
    _judgments_insert(
        campaign=campaign,
        item_ids=[item_of[r[0]] for r in rows],
        rater_ids=[raters[r[1]] for r in rows],
        answers_json=[json.dumps({question_key: r[2]}) for r in rows],
        now=now,
    )
    _import_finish(campaign)
    return ImportReport(
        campaign=campaign,
        items=len(item_keys),
        gold_items=len(gold_keys),
        judgments=len(rows),
        raters=len(raters),
        duplicates_dropped=len(labels) - len(rows),
    )


def _import_model_versions(source: str, names: list[str]) -> dict[str, ModelVersion]:
    versions = {}
    for display in dict.fromkeys(names):
        slug = f"{_slug(source)}-{_slug(display)}"[:100]
        version = ModelVersion.objects.filter(name=slug).first() or model_version_register(
            name=slug,
            kind=ModelKind.IMAGE,
            uri=f"import:{source}/{display}",
            description=display,
            provenance={"import_source": source},
        )
        versions[display] = version
    return versions


@transaction.atomic
def crowd_comparisons_import(
    *,
    name: str,
    comparisons,
    source: str,
    question_key: str = "overall",
    question_label: str = "Which is better?",
    created_by: AbstractBaseUser | None = None,
) -> ImportReport:
    """Load external pairwise comparisons (``crowd_formats.CrowdComparisons``) as a closed pair
    campaign: one model version per compared system, one candidate per (prompt, system), and a
    pair item per comparison (a worker's repeat of a pair goes to a new item). The annotation
    app shuffles each item's display order; answers are flipped where it swapped the sides, so
    ``left`` always means the candidate shown on the left."""
    from annotation.schema import LEFT_TIE_RIGHT

    if not len(comparisons):
        raise ValidationError({"file": ["The file holds no comparisons."]})
    same = [
        i
        for i, (a, b) in enumerate(zip(comparisons.left, comparisons.right, strict=True))
        if a == b
    ]
    if same:
        raise ValidationError(
            {
                "file": [
                    f"Comparison {same[0] + 1} compares {comparisons.left[same[0]]!r} with itself."
                ]
            }
        )
    versions = _import_model_versions(source, [*comparisons.left, *comparisons.right])
    keys = list(
        dict.fromkeys(
            (p, m)
            for p, a, b in zip(
                comparisons.prompts, comparisons.left, comparisons.right, strict=True
            )
            for m in (a, b)
        )
    )
    candidates = dict(
        zip(
            keys,
            _import_candidates(
                source=source,
                keys=[f"{p} · {m}" if p else m for p, m in keys],
                model_versions=[versions[m] for _, m in keys],
            ),
            strict=True,
        )
    )
    workers = [w or "anonymous" for w in comparisons.workers]
    # Comparisons of the same pair on the same prompt share an item unless a worker repeats it.
    slots: dict[tuple, list[set]] = defaultdict(list)
    placement = []
    for prompt, a, b, worker in zip(
        comparisons.prompts, comparisons.left, comparisons.right, workers, strict=True
    ):
        pair = (prompt, *sorted((a, b)))
        for index, judged in enumerate(slots[pair]):
            if worker not in judged:
                judged.add(worker)
                placement.append((pair, index))
                break
        else:
            slots[pair].append({worker})
            placement.append((pair, len(slots[pair]) - 1))
    groups = [(pair, index) for pair, sets in slots.items() for index in range(len(sets))]
    counts = [len(sets[index]) for pair, sets in slots.items() for index in range(len(sets))]
    question = {
        "key": question_key,
        "type": "single_choice",
        "label": question_label,
        "options": LEFT_TIE_RIGHT,
    }
    campaign = _import_campaign(
        name=name,
        kind=CampaignKind.PAIR,
        question=question,
        counts=counts,
        source=source,
        created_by=created_by,
    )
    made = items.campaign_items_add(
        campaign=campaign,
        seed=campaign.pk,
        candidate_groups=[[candidates[(p, a)], candidates[(p, b)]] for (p, a, b), _ in groups],
    )
    item_of = {group: item.pk for group, item in zip(groups, made, strict=True)}
    shown_left = dict(
        ItemCandidate.objects.filter(item__campaign=campaign, position=0).values_list(
            "item_id", "candidate_id"
        )
    )
    raters = _import_raters(source, workers)
    flip = {"left": "right", "right": "left", "tie": "tie"}
    item_ids, rater_ids, answers = [], [], []
    for (pair, index), a, winner, worker in zip(
        placement, comparisons.left, comparisons.winner, workers, strict=True
    ):
        item_id = item_of[(pair, index)]
        left_is_a = shown_left[item_id] == candidates[(pair[0], a)].pk
        item_ids.append(item_id)
        rater_ids.append(raters[worker])
        answers.append(json.dumps({question_key: winner if left_is_a else flip[winner]}))
    _judgments_insert(
        campaign=campaign,
        item_ids=item_ids,
        rater_ids=rater_ids,
        answers_json=answers,
        now=timezone.now(),
    )
    _import_finish(campaign)
    return ImportReport(
        campaign=campaign,
        items=len(made),
        gold_items=0,
        judgments=len(item_ids),
        raters=len(raters),
        model_versions=len(versions),
    )
