"""The selection engine: which candidates a rule keeps, why the others were dropped, and the
entries (split, caption, labels, provenance) a version is built from.

Read-only: previews (selectors) and builds (``versions``) share it. Builds pass
``store_fingerprints=True`` so perceptual hashes computed for near-duplicate removal are kept
(``CandidateFingerprint``); previews compute them in memory only.

Conditions apply in a fixed order and every stage records how many candidates it kept and
dropped, so the preview reads as a funnel:

    source → not gold → judged by active raters → min judgments → each condition → motion floor
    → held-out prompts → near-duplicates → per-prompt cap → split by prompt

A condition thresholds each candidate's consensus answer (``labels``, ``min_confidence``,
``min_mean``, ``max_mean``), or, with ``min_agreement``, keeps the candidate its item's judgments
picked on a pick question (best of N) or a pair question (see ``_apply_pick_condition``).
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import Count, Q

from annotation.models import CampaignMembership, ItemCandidate, Judgment, MembershipStatus
from annotation.quality.selectors import (
    item_candidate_consensus,
    item_consensus_lookup,
    item_picks,
)
from generation.models import Candidate, CandidateOrigin
from training_bridge.captions import caption_for, normalise_prompt
from training_bridge.models import (
    CandidateFingerprint,
    CaptionSource,
    DatasetKind,
    DatasetPurpose,
    DatasetRule,
    Split,
)
from training_bridge.neardup import NearDuplicateIndex, perceptual_hash_bytes

CANDIDATE_KIND = {DatasetKind.IMAGE: "sticker", DatasetKind.ANIMATION: "animation"}
# Comparisons with thresholds allow for float noise: 2 of 3 votes is 0.666…, and a curator who
# types 0.6667 means "two thirds".
EPSILON = 1e-4
# Manifest rows are made, hashed and stored this many at a time: the candidates' fields are read
# per chunk, so a build holds the kept units and one chunk, not a million rows of fields.
ENTRY_CHUNK = 5000
_ENTRY_FIELDS = (
    "id",
    "kind",
    "file",
    "sha256",
    "frames_prefix",
    "frame_count",
    "raw_prompt",
    "enhanced_prompt",
    "motion_prompt",
    "prompt_id",
    "model_version__name",
    "seed",
    "source_id",
    "source__file",
    "motion_score",
)


@dataclass(frozen=True)
class RuleSpec:
    """A rule's settings as the engine reads them (from a saved rule or an unsaved preview)."""

    purpose: str
    kind: str
    campaign_ids: tuple[int, ...] = ()
    weak_source_names: tuple[str, ...] = ()
    consensus_method: str = "majority"
    conditions: tuple[dict, ...] = ()
    min_judgments: int = 1
    exclude_gold: bool = True
    exclude_paused_only: bool = True
    min_motion_score: float | None = None
    weak_label_filters: dict = field(default_factory=dict)
    motion_buckets: tuple[int, ...] = ()
    exclude_held_out: bool = True
    per_prompt_cap: int | None = None
    dedup_max_distance: int | None = None
    validation_fraction: float = 0.1
    split_seed: int = 0
    caption_source: str = CaptionSource.RAW_PROMPT
    caption_template: str = ""

    @classmethod
    def from_rule(cls, rule: DatasetRule) -> RuleSpec:
        return cls(
            purpose=rule.purpose,
            kind=rule.kind,
            campaign_ids=tuple(sorted(rule.campaigns.values_list("pk", flat=True))),
            weak_source_names=tuple(sorted(rule.weak_sources.values_list("name", flat=True))),
            consensus_method=rule.consensus_method,
            conditions=tuple(rule.conditions or ()),
            min_judgments=rule.min_judgments,
            exclude_gold=rule.exclude_gold,
            exclude_paused_only=rule.exclude_paused_only,
            min_motion_score=rule.min_motion_score,
            weak_label_filters=dict(rule.weak_label_filters or {}),
            motion_buckets=tuple(rule.motion_buckets or ()),
            exclude_held_out=rule.exclude_held_out,
            per_prompt_cap=rule.per_prompt_cap,
            dedup_max_distance=rule.dedup_max_distance,
            validation_fraction=rule.validation_fraction,
            split_seed=rule.split_seed,
            caption_source=rule.caption_source,
            caption_template=rule.caption_template,
        )

    def snapshot(self) -> dict:
        data = asdict(self)
        for key in ("campaign_ids", "weak_source_names", "conditions", "motion_buckets"):
            data[key] = list(data[key])
        return data


@dataclass
class Stage:
    key: str
    label: str
    kept: int
    dropped: int


# Units start with this one empty dict and take shared dicts from ``_SharedDicts``: a unit's
# labels, confidences and scores are replaced, never changed in place.
_NO_VALUES: dict = {}


@dataclass(slots=True)
class Unit:
    """One rated appearance of a candidate (an item of a campaign, or one weak candidate).

    Slotted, with the item's gold flag and judgment counts, and the candidate's facts that the
    stages read (kind, prompt key, held-out flag, motion score, weak labels), on the unit rather
    than in dicts by item or candidate: a build holds one unit per rated candidate, a million at
    the largest size measured, and five slots cost each unit 40 bytes where a dict by candidate
    id of a tuple of facts cost about 160 (entry, key and tuple).
    """

    candidate_id: int
    item_id: int | None = None
    campaign_id: int | None = None
    n_judgments: int = 0
    is_gold: bool = False
    judged_by_active: bool = True
    labels: dict = field(default_factory=lambda: _NO_VALUES)
    confidences: dict = field(default_factory=lambda: _NO_VALUES)
    scores: dict = field(default_factory=lambda: _NO_VALUES)
    label: Any = None
    confidence: float = 1.0
    mean: float | None = None
    split: str = ""
    # The candidate's facts; kind stays "" until they are loaded (see ``_attach_facts``).
    kind: str = ""
    prompt_key: str = ""
    held_out: bool = False
    motion_score: float | None = None
    weak_labels: dict = field(default_factory=lambda: _NO_VALUES)


class _SharedDicts:
    """One dict per distinct content: a million units' ``{"aligned": True}`` and
    ``{"aligned": 0.666667}`` are a few dicts, not two million (about 370 MB)."""

    def __init__(self):
        self._known: dict = {}

    def with_value(self, values: dict, key: str, value: Any) -> dict:
        new = {**values, key: value}
        try:
            # Types are part of the key: True == 1 == 1.0, but they are different labels.
            return self._known.setdefault(tuple((k, type(v), v) for k, v in new.items()), new)
        except TypeError:  # an unhashable answer (a list): kept as it is
            return new


@dataclass
class PlannedEntry:
    """A manifest row before it is stored."""

    candidate_id: int
    split: str
    caption: str
    file_key: str
    file_sha256: str
    file_ext: str
    label: Any
    confidence: float
    labels: dict
    confidences: dict
    scores: dict
    n_judgments: int
    model_version_name: str
    seed: int
    prompt_text: str
    teacher: str
    source_candidate_id: int | None
    source_file_key: str
    frames_prefix: str
    frame_count: int
    motion_score: float | None

    def canonical(self) -> list:
        """The fields the manifest checksum covers, in a fixed order."""
        return [
            self.candidate_id,
            self.split,
            self.caption,
            self.file_sha256,
            self.label,
            self.confidence,
            self.labels,
            self.confidences,
            self.scores,
            self.model_version_name,
            self.seed,
            self.prompt_text,
            self.teacher,
            self.source_candidate_id,
            self.frame_count,
            self.motion_score,
        ]


@dataclass
class Selection:
    """What a rule keeps: the units (one per kept candidate, in candidate id order, each with its
    split), not yet their manifest rows: ``planned_entries`` makes those a chunk at a time."""

    spec: RuleSpec
    stages: list[Stage]
    units: list[Unit]
    dropped: dict[int, str]
    prompt_count: int

    @property
    def kept_ids(self) -> list[int]:
        return [u.candidate_id for u in self.units]

    @property
    def train_count(self) -> int:
        return sum(1 for u in self.units if u.split == Split.TRAIN)


class _Funnel:
    """Units flowing through the stages; counts are of distinct candidates.

    A candidate's units are adjacent in ``units`` (in candidate id order until each candidate
    has one unit, in any order after): a stage counts candidates as runs of one id, where a
    set of the ids before and after each stage costs about 32 MB each per million."""

    def __init__(self, units: list[Unit], label: str):
        self.units = units
        self.stages: list[Stage] = []
        self.dropped: dict[int, str] = {}
        kept = sum(1 for _ in groupby(units, key=_candidate_id))
        self.stages.append(Stage(key="source", label=label, kept=kept, dropped=0))

    def apply(self, key: str, label: str, keep) -> None:
        kept_units: list[Unit] = []
        kept = dropped = 0
        for candidate_id, units in groupby(self.units, key=_candidate_id):
            passed = [u for u in units if keep(u)]
            if passed:
                kept_units.extend(passed)
                kept += 1
            else:
                self.dropped.setdefault(candidate_id, key)
                dropped += 1
        self.units = kept_units
        self.stages.append(Stage(key=key, label=label, kept=kept, dropped=dropped))


_candidate_id = attrgetter("candidate_id")


def _split_of(prompt_keys: list[str], *, fraction: float, seed: int) -> dict[str, str]:
    """Train or validation per prompt, from a hash of (seed, prompt): stable when prompts are
    added. With a fraction above 0 and at least two prompts, each split gets at least one."""
    if fraction <= 0:
        return dict.fromkeys(prompt_keys, Split.TRAIN)

    def position(key: str) -> float:
        digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(prompt_keys, key=lambda k: (position(k), k))
    split = {k: Split.VALIDATION if position(k) < fraction else Split.TRAIN for k in ranked}
    if len(ranked) >= 2:
        if all(s == Split.TRAIN for s in split.values()):
            split[ranked[0]] = Split.VALIDATION
        elif all(s == Split.VALIDATION for s in split.values()):
            split[ranked[-1]] = Split.TRAIN
    return split


def _judgment_counts(campaign_id: int) -> dict[int, tuple[int, int, int]]:
    """Per item: (judgments that count, non-skipped judgments, non-skipped by active raters)."""
    paused = CampaignMembership.objects.filter(
        campaign_id=campaign_id, status=MembershipStatus.PAUSED
    ).values("rater_id")
    rows = (
        Judgment.objects.filter(campaign_id=campaign_id, skipped=False)
        .values("item_id")
        .annotate(
            n=Count("id", filter=Q(excluded=False)),
            n_all=Count("id"),
            n_active=Count("id", filter=~Q(rater_id__in=paused)),
        )
        .values_list("item_id", "n", "n_all", "n_active")
        .iterator(chunk_size=10000)
    )
    # Items share a few distinct counts ((3, 3, 3) a million times): one tuple each, so the
    # map costs its entries only.
    shared: dict[tuple[int, int, int], tuple[int, int, int]] = {}
    return {item: shared.setdefault((n, a, b), (n, a, b)) for item, n, a, b in rows}


def _campaign_units(spec: RuleSpec) -> list[Unit]:
    """One unit per item and candidate of the rule's campaigns, in (candidate, campaign, item)
    order, sorted by PostgreSQL rather than by a key tuple per unit here."""
    links = (
        ItemCandidate.objects.filter(item__campaign_id__in=spec.campaign_ids)
        .order_by("candidate_id", "item__campaign_id", "item_id")
        .values_list("item__campaign_id", "item_id", "candidate_id", "item__is_gold")
    )
    units = []
    counts: dict[int, tuple] = {}
    for campaign_id in spec.campaign_ids:
        counts.update(_judgment_counts(campaign_id))
    for campaign_id, item_id, candidate_id, is_gold in links.iterator(chunk_size=10000):
        n, n_all, n_active = counts.get(item_id, (0, 0, 0))
        units.append(
            Unit(
                candidate_id=candidate_id,
                item_id=item_id,
                campaign_id=campaign_id,
                n_judgments=n,
                is_gold=is_gold,
                judged_by_active=n_all == 0 or n_active > 0,
            )
        )
    return units


def _question_types(spec: RuleSpec) -> dict[tuple[int, str], dict]:
    from annotation.models import Campaign

    questions = {}
    for campaign in Campaign.objects.filter(pk__in=spec.campaign_ids):
        for question in campaign.question_schema or []:
            questions[(campaign.pk, question["key"])] = question
    return questions


def _condition_label(condition: dict) -> str:
    parts = [f"question {condition['question']!r}"]
    if condition.get("labels") is not None:
        parts.append("consensus in " + ", ".join(_show(v) for v in condition["labels"]))
    if condition.get("min_confidence") is not None:
        parts.append(f"confidence ≥ {condition['min_confidence']}")
    if condition.get("min_mean") is not None:
        parts.append(f"mean ≥ {condition['min_mean']}")
    if condition.get("max_mean") is not None:
        parts.append(f"mean ≤ {condition['max_mean']}")
    return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_pick_condition(condition: Any) -> bool:
    """A condition that keeps the candidate an item's judgments picked (it has min_agreement),
    rather than one that thresholds each candidate's own answers."""
    return isinstance(condition, dict) and "min_agreement" in condition


def _pick_label(condition: dict) -> str:
    return (
        f"question {condition['question']!r}: the item's pick, by a share ≥ "
        f"{condition['min_agreement']} of at least {condition['min_judgments']} judgment(s); "
        "ties keep none"
    )


def _apply_pick_condition(
    funnel: _Funnel, spec: RuleSpec, index: int, condition: dict, shared: _SharedDicts
) -> None:
    """Keep a unit when its candidate won its item's pick: picked more than any other shown
    candidate (a tie for the top keeps none of them), by at least ``min_agreement`` of the
    item's counted judgments, with at least ``min_judgments`` of them. The label is True and
    the confidence that share."""
    key = condition["question"]
    min_agreement = condition["min_agreement"]
    min_judgments = condition["min_judgments"]
    picks = {
        campaign_id: item_picks(campaign_id=campaign_id, question_key=key)
        for campaign_id in spec.campaign_ids
    }

    def keep(unit: Unit) -> bool:
        pick = picks[unit.campaign_id].get(unit.item_id)
        if (
            pick is None
            or pick.winner != unit.candidate_id
            or pick.n_judgments < min_judgments
            or pick.share < min_agreement - EPSILON
        ):
            return False
        share = round(pick.share, 6)
        unit.labels = shared.with_value(unit.labels, key, True)
        unit.confidences = shared.with_value(unit.confidences, key, share)
        if index == 0:
            unit.label, unit.confidence = True, share
        return True

    funnel.apply(f"condition_{index}", _pick_label(condition), keep)


def _apply_conditions(funnel: _Funnel, spec: RuleSpec) -> None:
    questions = _question_types(spec)
    shared = _SharedDicts()
    for index, condition in enumerate(spec.conditions):
        if is_pick_condition(condition):
            _apply_pick_condition(funnel, spec, index, condition, shared)
            continue
        key = condition["question"]
        consensus: dict[int, dict] = {}
        for campaign_id in spec.campaign_ids:
            question = questions[(campaign_id, key)]
            reader = (
                item_candidate_consensus if question.get("per_candidate") else item_consensus_lookup
            )
            consensus[campaign_id] = (
                reader(campaign_id=campaign_id, question_key=key, method=spec.consensus_method),
                bool(question.get("per_candidate")),
            )
        labels = condition.get("labels")
        min_confidence = condition.get("min_confidence")
        min_mean = condition.get("min_mean")
        max_mean = condition.get("max_mean")

        def keep(
            unit: Unit,
            *,
            key=key,
            consensus=consensus,
            index=index,
            labels=labels,
            min_confidence=min_confidence,
            min_mean=min_mean,
            max_mean=max_mean,
        ) -> bool:
            table, per_candidate = consensus[unit.campaign_id]
            lookup = (unit.item_id, unit.candidate_id) if per_candidate else unit.item_id
            result = table.get(lookup)
            if result is None:
                return False
            if labels is not None and (result.is_tie or not _label_in(result.label, labels)):
                return False
            if min_confidence is not None and result.confidence < min_confidence - EPSILON:
                return False
            if min_mean is not None and (result.mean is None or result.mean < min_mean - EPSILON):
                return False
            if max_mean is not None and (result.mean is None or result.mean > max_mean + EPSILON):
                return False
            unit.labels = shared.with_value(unit.labels, key, result.label)
            unit.confidences = shared.with_value(
                unit.confidences, key, round(float(result.confidence), 6)
            )
            if result.mean is not None:
                unit.scores = shared.with_value(unit.scores, key, round(float(result.mean), 6))
            if index == 0:
                unit.label = result.label
                unit.confidence = round(float(result.confidence), 6)
                unit.mean = result.mean
            return True

        funnel.apply(f"condition_{index}", _condition_label(condition), keep)


def _label_in(label: Any, accepted: list) -> bool:
    # True == 1 in Python; a binary label must not match a Likert 1.
    return any(label == a and type(label) is type(a) for a in accepted)


_FACT_FIELDS = (
    "id",
    "kind",
    "raw_prompt",
    "prompt__prompt_set__is_held_out",
    "motion_score",
    "weak_labels",
)


def _facts_rows(qs, spec: RuleSpec) -> Iterator[tuple]:
    """(id, kind, prompt key, held out, motion score, weak labels) of the candidates of ``qs``
    in id order. ``weak_labels`` is read only for weak rules (JSON decoding costs about 1 s per
    100,000 candidates). Kinds and prompt keys are interned: a million candidates share two
    kinds and a fifth as many prompts."""
    is_weak = spec.purpose == DatasetPurpose.WEAK
    fields = _FACT_FIELDS if is_weak else _FACT_FIELDS[:-1]
    prompt_keys: dict[str, str] = {}
    for row in qs.order_by("pk").values_list(*fields).iterator(chunk_size=10000):
        candidate_id, kind, raw_prompt, held_out, motion_score = row[:5]
        prompt_key = prompt_keys.get(raw_prompt)
        if prompt_key is None:
            prompt_key = prompt_keys[raw_prompt] = sys.intern(normalise_prompt(raw_prompt))
        weak_labels = (row[5] or {}) if is_weak else _NO_VALUES
        yield candidate_id, sys.intern(kind), prompt_key, bool(held_out), motion_score, weak_labels


def _set_facts(unit: Unit, row: tuple) -> Unit:
    _, unit.kind, unit.prompt_key, unit.held_out, unit.motion_score, unit.weak_labels = row
    return unit


def _attach_facts(units: list[Unit], spec: RuleSpec) -> None:
    """Give each unit its candidate's facts. ``units`` are in candidate id order, as the
    candidates are read: a merge of the two, with no map by candidate id in between."""
    qs = Candidate.objects.filter(
        pk__in=ItemCandidate.objects.filter(item__campaign_id__in=spec.campaign_ids).values(
            "candidate_id"
        )
    )
    at = 0
    for row in _facts_rows(qs, spec):
        while at < len(units) and units[at].candidate_id < row[0]:
            at += 1
        while at < len(units) and units[at].candidate_id == row[0]:
            _set_facts(units[at], row)
            at += 1


def _fingerprints(ids: list[int], *, store: bool) -> dict[int, int]:
    known = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        known.update(
            CandidateFingerprint.objects.filter(candidate_id__in=chunk).values_list(
                "candidate_id", "phash"
            )
        )
    missing = [i for i in ids if i not in known]
    files = {}
    for start in range(0, len(missing), 5000):
        chunk = missing[start : start + 5000]
        files.update(Candidate.objects.filter(pk__in=chunk).values_list("pk", "file"))
    new = []
    for candidate_id in missing:
        key = files[candidate_id]
        try:
            with default_storage.open(key, "rb") as fh:
                value = perceptual_hash_bytes(fh.read())
        except (OSError, ValueError, SyntaxError) as exc:
            raise ValidationError(
                {
                    "dedup_max_distance": [
                        f"Candidate {candidate_id}'s file {key} cannot be read for near-duplicate "
                        f"removal ({exc})."
                    ]
                }
            ) from exc
        known[candidate_id] = value
        new.append(CandidateFingerprint(candidate_id=candidate_id, phash=value))
    if store and new:
        CandidateFingerprint.objects.bulk_create(new, batch_size=2000, ignore_conflicts=True)
    return known


def _source_units(spec: RuleSpec) -> _Funnel:
    """The starting units, with their candidates' facts: campaigns' items, or weak candidates."""
    wanted_kind = CANDIDATE_KIND[spec.kind]
    kind_label = f"is {'an animation' if wanted_kind == 'animation' else 'a sticker'}"
    if spec.purpose == DatasetPurpose.WEAK:
        candidates = Candidate.objects.filter(
            origin=CandidateOrigin.IMPORTED, import_source__in=spec.weak_source_names
        )
        units = [
            _set_facts(Unit(candidate_id=row[0]), row) for row in _facts_rows(candidates, spec)
        ]
        funnel = _Funnel(units, "candidates in the weak sources")
        funnel.apply("kind", kind_label, lambda u: u.kind == wanted_kind)
        return funnel
    funnel = _Funnel(_campaign_units(spec), "candidates in the source campaigns")
    if spec.exclude_gold:
        funnel.apply("gold", "not a gold item", lambda u: not u.is_gold)
    if spec.exclude_paused_only:
        funnel.apply(
            "paused_only", "not judged by paused raters only", lambda u: u.judged_by_active
        )
    funnel.apply(
        "min_judgments",
        f"at least {spec.min_judgments} judgment(s)",
        lambda u: u.n_judgments >= spec.min_judgments,
    )
    _apply_conditions(funnel, spec)
    _attach_facts(funnel.units, spec)
    funnel.apply("kind", kind_label, lambda u: u.kind == wanted_kind)
    return funnel


def _weak_stages(funnel: _Funnel, spec: RuleSpec) -> None:
    for label_key, accepted in sorted(spec.weak_label_filters.items()):
        funnel.apply(
            f"weak_label_{label_key}",
            f"weak label {label_key!r} in " + ", ".join(_show(v) for v in accepted),
            lambda u, k=label_key, a=accepted: _label_in(u.weak_labels.get(k), a),
        )
    if spec.motion_buckets:
        buckets = set(spec.motion_buckets)
        funnel.apply(
            "motion_bucket",
            "motion bucket in " + ", ".join(map(str, sorted(buckets))),
            lambda u: u.weak_labels.get("motion_bucket") in buckets,
        )
    first = next(iter(sorted(spec.weak_label_filters)), None)
    for unit in funnel.units:
        weak = unit.weak_labels
        unit.labels = dict(weak)
        unit.label = weak.get(first) if first else None
        confidence = weak.get("confidence", 1.0)
        is_number = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        unit.confidence = min(max(float(confidence), 0.0), 1.0) if is_number else 1.0


def _rank(unit: Unit) -> tuple:
    """Best first: higher confidence, higher mean, then the older candidate."""
    return (-unit.confidence, -(unit.mean or 0.0), unit.candidate_id)


def _best_per_candidate(units: list[Unit]) -> list[Unit]:
    """A candidate rated in several campaigns or items keeps its best rating (by ``_rank``; the
    first in (campaign, item) order on a tie). ``units`` are in candidate id order, so a
    candidate's units are neighbours: no sort of every unit and no map by candidate id."""
    return [min(group, key=_rank) for _, group in groupby(units, key=_candidate_id)]


def _sort_by_rank(units: list[Unit]) -> None:
    """Sort units in candidate id order (one each) by ``_rank``, in place. Two stable sorts,
    on the mean and then on the confidence, give the order of the whole key with a float per
    unit for each, where sorting by ``_rank`` holds a tuple and two floats per unit at once
    (about 130 bytes each)."""
    units.sort(key=lambda u: -(u.mean or 0.0))
    units.sort(key=lambda u: -u.confidence)


def select(spec: RuleSpec, *, store_fingerprints: bool = False) -> Selection:
    """Run the rule: the stage funnel, the kept units (by candidate id, each with its split) and
    why the rest went.

    Assumes the spec passed ``rule_spec_check`` (questions exist, thresholds fit).
    """
    funnel = _source_units(spec)
    if spec.purpose == DatasetPurpose.WEAK:
        _weak_stages(funnel, spec)
    if spec.min_motion_score is not None:
        floor = spec.min_motion_score
        funnel.apply(
            "motion_score",
            f"motion score ≥ {floor}",
            lambda u: u.motion_score is not None and u.motion_score >= floor - 1e-12,
        )
    if spec.purpose == DatasetPurpose.EVALUATION:
        funnel.apply("held_out", "from a held-out prompt set", lambda u: u.held_out)
    elif spec.exclude_held_out:
        funnel.apply("held_out", "not from a held-out prompt set", lambda u: not u.held_out)
    funnel.units = _best_per_candidate(funnel.units)
    # Only these two stages read the units best first; the rest keep candidate id order.
    if spec.dedup_max_distance is not None or spec.per_prompt_cap is not None:
        _sort_by_rank(funnel.units)
    if spec.dedup_max_distance is not None:
        hashes = _fingerprints([u.candidate_id for u in funnel.units], store=store_fingerprints)
        index = NearDuplicateIndex(spec.dedup_max_distance)
        funnel.apply(
            "near_duplicate",
            f"not within {spec.dedup_max_distance} bits of a better candidate",
            lambda u: index.add_if_new(hashes[u.candidate_id]),
        )
    if spec.per_prompt_cap is not None:
        taken: Counter = Counter()

        def under_cap(unit: Unit) -> bool:
            taken[unit.prompt_key] += 1
            return taken[unit.prompt_key] <= spec.per_prompt_cap

        funnel.apply("per_prompt_cap", f"at most {spec.per_prompt_cap} per prompt", under_cap)
    split = _split_of(
        sorted({u.prompt_key for u in funnel.units}),
        fraction=spec.validation_fraction,
        seed=spec.split_seed,
    )
    for unit in funnel.units:
        unit.split = split[unit.prompt_key]
    funnel.units.sort(key=lambda u: u.candidate_id)
    return Selection(
        spec=spec,
        stages=funnel.stages,
        units=funnel.units,
        dropped=funnel.dropped,
        prompt_count=len(split),
    )


def planned_entries(
    selection: Selection, units: list[Unit] | None = None
) -> Iterator[list[PlannedEntry]]:
    """The manifest rows of ``units`` (by default all the selection keeps), in their order, in
    lists of at most ``ENTRY_CHUNK``: each chunk reads its candidates' fields in one query by
    primary key, so memory holds one chunk of rows whatever the version's size."""
    units = selection.units if units is None else units
    for start in range(0, len(units), ENTRY_CHUNK):
        chunk = units[start : start + ENTRY_CHUNK]
        rows = {
            row[0]: dict(zip(_ENTRY_FIELDS, row, strict=True))
            for row in Candidate.objects.filter(pk__in=[u.candidate_id for u in chunk]).values_list(
                *_ENTRY_FIELDS
            )
        }
        yield [_entry(selection.spec, unit, rows[unit.candidate_id]) for unit in chunk]


def _entry(spec: RuleSpec, unit: Unit, row: dict) -> PlannedEntry:
    is_animation = row["kind"] == "animation"
    return PlannedEntry(
        candidate_id=row["id"],
        split=unit.split,
        caption=caption_for(spec, row),
        file_key=row["file"],
        file_sha256=row["sha256"],
        file_ext=row["file"].rsplit(".", 1)[-1].lower() if "." in row["file"] else "png",
        label=unit.label,
        confidence=unit.confidence,
        labels=unit.labels,
        confidences=unit.confidences,
        scores=unit.scores,
        n_judgments=unit.n_judgments,
        model_version_name=row["model_version__name"] or "",
        seed=row["seed"],
        prompt_text=row["raw_prompt"],
        teacher=(row["model_version__name"] or "")
        if spec.purpose == DatasetPurpose.TEACHER_SELECTION
        else "",
        source_candidate_id=row["source_id"],
        source_file_key=row["source__file"] or "",
        frames_prefix=row["frames_prefix"] if is_animation else "",
        frame_count=row["frame_count"],
        motion_score=row["motion_score"],
    )


def dropped_by_stage(selection: Selection) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for candidate_id, stage in sorted(selection.dropped.items()):
        grouped[stage].append(candidate_id)
    return grouped
