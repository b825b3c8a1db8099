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
import re
import string
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import Count, Q

from annotation.models import CampaignMembership, ItemCandidate, Judgment, MembershipStatus
from annotation.quality.selectors import item_candidate_consensus, item_consensus, item_picks
from generation.models import Candidate, CandidateOrigin
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
CAPTION_PLACEHOLDERS = ("prompt", "enhanced_prompt", "motion_prompt")
# Comparisons with thresholds allow for float noise: 2 of 3 votes is 0.666…, and a curator who
# types 0.6667 means "two thirds".
EPSILON = 1e-4
_SPACES = re.compile(r"\s+")
_CANDIDATE_FIELDS = (
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
    "prompt__prompt_set__is_held_out",
    "model_version__name",
    "seed",
    "source_id",
    "source__file",
    "motion_score",
    "weak_labels",
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


@dataclass
class Unit:
    """One rated appearance of a candidate (an item of a campaign, or one weak candidate)."""

    candidate_id: int
    item_id: int | None = None
    campaign_id: int | None = None
    n_judgments: int = 0
    labels: dict = field(default_factory=dict)
    confidences: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    label: Any = None
    confidence: float = 1.0
    mean: float | None = None


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
    stages: list[Stage]
    entries: list[PlannedEntry]
    dropped: dict[int, str]

    @property
    def kept_ids(self) -> list[int]:
        return [e.candidate_id for e in self.entries]


class _Funnel:
    """Units flowing through the stages; counts are of distinct candidates."""

    def __init__(self, units: list[Unit], label: str):
        self.units = units
        self.stages: list[Stage] = []
        self.dropped: dict[int, str] = {}
        count = len({u.candidate_id for u in units})
        self.stages.append(Stage(key="source", label=label, kept=count, dropped=0))

    def apply(self, key: str, label: str, keep) -> None:
        before = {u.candidate_id for u in self.units}
        self.units = [u for u in self.units if keep(u)]
        after = {u.candidate_id for u in self.units}
        for candidate_id in before - after:
            self.dropped.setdefault(candidate_id, key)
        self.stages.append(
            Stage(key=key, label=label, kept=len(after), dropped=len(before - after))
        )


def normalise_prompt(text: str) -> str:
    """The prompt as the split and the cap see it: case and spacing do not make a new prompt."""
    return _SPACES.sub(" ", text).strip().casefold()


def caption_for(spec: RuleSpec, row: dict) -> str:
    raw = row["raw_prompt"]
    if spec.caption_source == CaptionSource.ENHANCED_PROMPT:
        return row["enhanced_prompt"] or raw
    if spec.caption_source == CaptionSource.MOTION_PROMPT:
        return row["motion_prompt"] or raw
    if spec.caption_source == CaptionSource.TEMPLATE:
        return spec.caption_template.format_map(
            {
                "prompt": raw,
                "enhanced_prompt": row["enhanced_prompt"] or raw,
                "motion_prompt": row["motion_prompt"] or raw,
            }
        )
    return raw


def template_errors(template: str) -> list[str]:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"The template is malformed: {exc}."]
    unknown = sorted({f for f in fields if f not in CAPTION_PLACEHOLDERS})
    if unknown:
        return [
            f"Unknown placeholder {{{unknown[0]}}}: use "
            + ", ".join(f"{{{p}}}" for p in CAPTION_PLACEHOLDERS)
            + "."
        ]
    return []


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
    )
    return {item: (n, n_all, n_active) for item, n, n_all, n_active in rows}


def _campaign_units(spec: RuleSpec) -> tuple[list[Unit], dict[int, bool], dict[int, tuple]]:
    links = ItemCandidate.objects.filter(item__campaign_id__in=spec.campaign_ids).values_list(
        "item__campaign_id", "item_id", "candidate_id", "item__is_gold"
    )
    units, gold = [], {}
    counts: dict[int, tuple] = {}
    for campaign_id in spec.campaign_ids:
        counts.update(_judgment_counts(campaign_id))
    for campaign_id, item_id, candidate_id, is_gold in links.iterator(chunk_size=10000):
        gold[item_id] = is_gold
        n = counts.get(item_id, (0, 0, 0))[0]
        units.append(
            Unit(candidate_id=candidate_id, item_id=item_id, campaign_id=campaign_id, n_judgments=n)
        )
    units.sort(key=lambda u: (u.candidate_id, u.campaign_id, u.item_id))
    return units, gold, counts


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


def _apply_pick_condition(funnel: _Funnel, spec: RuleSpec, index: int, condition: dict) -> None:
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
        unit.labels[key] = True
        unit.confidences[key] = share
        if index == 0:
            unit.label, unit.confidence = True, share
        return True

    funnel.apply(f"condition_{index}", _pick_label(condition), keep)


def _apply_conditions(funnel: _Funnel, spec: RuleSpec) -> None:
    questions = _question_types(spec)
    for index, condition in enumerate(spec.conditions):
        if is_pick_condition(condition):
            _apply_pick_condition(funnel, spec, index, condition)
            continue
        key = condition["question"]
        consensus: dict[int, dict] = {}
        for campaign_id in spec.campaign_ids:
            question = questions[(campaign_id, key)]
            reader = item_candidate_consensus if question.get("per_candidate") else item_consensus
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
            unit.labels[key] = result.label
            unit.confidences[key] = round(float(result.confidence), 6)
            if result.mean is not None:
                unit.scores[key] = round(float(result.mean), 6)
            if index == 0:
                unit.label = result.label
                unit.confidence = round(float(result.confidence), 6)
                unit.mean = result.mean
            return True

        funnel.apply(f"condition_{index}", _condition_label(condition), keep)


def _label_in(label: Any, accepted: list) -> bool:
    # True == 1 in Python; a binary label must not match a Likert 1.
    return any(label == a and type(label) is type(a) for a in accepted)


def _candidate_rows(qs, spec: RuleSpec, ids: set[int] | None = None) -> dict[int, dict]:
    """Candidate fields by id. Tuples are zipped into dicts by hand and ``weak_labels`` is read
    only for weak rules: Django's per-row dict building and JSON decoding cost about 2 s per
    100,000 candidates."""
    fields = _CANDIDATE_FIELDS if spec.purpose == DatasetPurpose.WEAK else _CANDIDATE_FIELDS[:-1]
    rows = {}
    for row in qs.values_list(*fields).iterator(chunk_size=10000):
        if ids is None or row[0] in ids:
            rows[row[0]] = dict(zip(fields, row, strict=True))
    if spec.purpose != DatasetPurpose.WEAK:
        for row in rows.values():
            row["weak_labels"] = {}
    return rows


def _load_candidates(ids: set[int], spec: RuleSpec) -> dict[int, dict]:
    qs = Candidate.objects.filter(item_links__item__campaign_id__in=spec.campaign_ids)
    return _candidate_rows(qs, spec, ids)


def _fingerprints(rows: dict[int, dict], ids: list[int], *, store: bool) -> dict[int, int]:
    known = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        known.update(
            CandidateFingerprint.objects.filter(candidate_id__in=chunk).values_list(
                "candidate_id", "phash"
            )
        )
    missing = [i for i in ids if i not in known]
    new = []
    for candidate_id in missing:
        key = rows[candidate_id]["file"]
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


def _source_units(spec: RuleSpec) -> tuple[_Funnel, dict[int, dict]]:
    """The starting units and the candidate rows: campaigns' items, or weak candidates."""
    wanted_kind = CANDIDATE_KIND[spec.kind]
    if spec.purpose == DatasetPurpose.WEAK:
        rows = _candidate_rows(
            Candidate.objects.filter(
                origin=CandidateOrigin.IMPORTED, import_source__in=spec.weak_source_names
            ),
            spec,
        )
        units = [Unit(candidate_id=i) for i in sorted(rows)]
        funnel = _Funnel(units, "candidates in the weak sources")
        funnel.apply(
            "kind",
            f"is {'an animation' if wanted_kind == 'animation' else 'a sticker'}",
            lambda u: rows[u.candidate_id]["kind"] == wanted_kind,
        )
        return funnel, rows
    units, gold, counts = _campaign_units(spec)
    funnel = _Funnel(units, "candidates in the source campaigns")
    if spec.exclude_gold:
        funnel.apply("gold", "not a gold item", lambda u: not gold[u.item_id])
    if spec.exclude_paused_only:

        def judged_by_active(unit: Unit) -> bool:
            _, n_all, n_active = counts.get(unit.item_id, (0, 0, 0))
            return n_all == 0 or n_active > 0

        funnel.apply("paused_only", "not judged by paused raters only", judged_by_active)
    funnel.apply(
        "min_judgments",
        f"at least {spec.min_judgments} judgment(s)",
        lambda u: u.n_judgments >= spec.min_judgments,
    )
    _apply_conditions(funnel, spec)
    ids = {u.candidate_id for u in funnel.units}
    rows = _load_candidates(ids, spec)
    funnel.apply(
        "kind",
        f"is {'an animation' if wanted_kind == 'animation' else 'a sticker'}",
        lambda u: u.candidate_id in rows and rows[u.candidate_id]["kind"] == wanted_kind,
    )
    return funnel, rows


def _weak_stages(funnel: _Funnel, spec: RuleSpec, rows: dict[int, dict]) -> None:
    for label_key, accepted in sorted(spec.weak_label_filters.items()):
        funnel.apply(
            f"weak_label_{label_key}",
            f"weak label {label_key!r} in " + ", ".join(_show(v) for v in accepted),
            lambda u, k=label_key, a=accepted: _label_in(
                (rows[u.candidate_id]["weak_labels"] or {}).get(k), a
            ),
        )
    if spec.motion_buckets:
        buckets = set(spec.motion_buckets)
        funnel.apply(
            "motion_bucket",
            "motion bucket in " + ", ".join(map(str, sorted(buckets))),
            lambda u: (rows[u.candidate_id]["weak_labels"] or {}).get("motion_bucket") in buckets,
        )
    first = next(iter(sorted(spec.weak_label_filters)), None)
    for unit in funnel.units:
        weak = rows[unit.candidate_id]["weak_labels"] or {}
        unit.labels = dict(weak)
        unit.label = weak.get(first) if first else None
        confidence = weak.get("confidence", 1.0)
        is_number = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        unit.confidence = min(max(float(confidence), 0.0), 1.0) if is_number else 1.0


def _rank(unit: Unit) -> tuple:
    """Best first: higher confidence, higher mean, then the older candidate."""
    return (-unit.confidence, -(unit.mean or 0.0), unit.candidate_id)


def select(spec: RuleSpec, *, store_fingerprints: bool = False) -> Selection:
    """Run the rule: the stage funnel, the kept entries (by candidate id) and why the rest went.

    Assumes the spec passed ``rule_spec_check`` (questions exist, thresholds fit).
    """
    funnel, rows = _source_units(spec)
    if spec.purpose == DatasetPurpose.WEAK:
        _weak_stages(funnel, spec, rows)
    if spec.min_motion_score is not None:
        floor = spec.min_motion_score
        funnel.apply(
            "motion_score",
            f"motion score ≥ {floor}",
            lambda u: (
                rows[u.candidate_id]["motion_score"] is not None
                and rows[u.candidate_id]["motion_score"] >= floor - 1e-12
            ),
        )
    if spec.purpose == DatasetPurpose.EVALUATION:
        funnel.apply(
            "held_out",
            "from a held-out prompt set",
            lambda u: bool(rows[u.candidate_id]["prompt__prompt_set__is_held_out"]),
        )
    elif spec.exclude_held_out:
        funnel.apply(
            "held_out",
            "not from a held-out prompt set",
            lambda u: not rows[u.candidate_id]["prompt__prompt_set__is_held_out"],
        )
    # A candidate rated in several campaigns or items keeps its best rating.
    best: dict[int, Unit] = {}
    for unit in sorted(funnel.units, key=_rank):
        best.setdefault(unit.candidate_id, unit)
    funnel.units = sorted(best.values(), key=_rank)
    if spec.dedup_max_distance is not None:
        hashes = _fingerprints(
            rows, [u.candidate_id for u in funnel.units], store=store_fingerprints
        )
        index = NearDuplicateIndex(spec.dedup_max_distance)
        funnel.apply(
            "near_duplicate",
            f"not within {spec.dedup_max_distance} bits of a better candidate",
            lambda u: index.add_if_new(hashes[u.candidate_id]),
        )
    prompt_key = {
        u.candidate_id: normalise_prompt(rows[u.candidate_id]["raw_prompt"]) for u in funnel.units
    }
    if spec.per_prompt_cap is not None:
        taken: Counter = Counter()

        def under_cap(unit: Unit) -> bool:
            key = prompt_key[unit.candidate_id]
            taken[key] += 1
            return taken[key] <= spec.per_prompt_cap

        funnel.apply("per_prompt_cap", f"at most {spec.per_prompt_cap} per prompt", under_cap)
    split = _split_of(
        sorted({prompt_key[u.candidate_id] for u in funnel.units}),
        fraction=spec.validation_fraction,
        seed=spec.split_seed,
    )
    entries = [
        _entry(spec, unit, rows[unit.candidate_id], split[prompt_key[unit.candidate_id]])
        for unit in sorted(funnel.units, key=lambda u: u.candidate_id)
    ]
    return Selection(stages=funnel.stages, entries=entries, dropped=funnel.dropped)


def _entry(spec: RuleSpec, unit: Unit, row: dict, split: str) -> PlannedEntry:
    is_animation = row["kind"] == "animation"
    return PlannedEntry(
        candidate_id=row["id"],
        split=split,
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
