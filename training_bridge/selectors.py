"""Curation reads: rule previews, versions and their manifests, diffs, exports and the audit
log. (The local copy of an export that training reads is written by ``exports.local_copy``.)"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.db.models import (
    Count,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)

from annotation.models import Judgment
from generation.models import Candidate
from stickerloop.media import media_url
from training_bridge import curation
from training_bridge.curation import RuleSpec, Stage
from training_bridge.models import (
    AuditEvent,
    DatasetEntry,
    DatasetExport,
    DatasetRule,
    DatasetVersion,
    TrainingTrigger,
    TriggerOrigin,
    WeakImport,
    WeakSource,
)

SAMPLE_SIZE = 24
DROPPED_SAMPLE_PER_STAGE = 6


def dataset_rule_list() -> QuerySet[DatasetRule]:
    # Ordered explicitly: Meta.ordering does not apply to an aggregated query.
    return (
        DatasetRule.objects.prefetch_related("campaigns", "weak_sources")
        .annotate(version_count=Count("versions"))
        .order_by("name", "id")
    )


def dataset_rules_with_new_matches() -> QuerySet[DatasetRule]:
    """Built rules whose source campaigns were judged since their newest version, most new
    items first; one query.

    Each comes with ``last_built_at`` (when its newest version was built, whatever its status)
    and ``new_items``: the items of its campaigns with a judgment that counts (not skipped, not
    excluded) made since then, gold items left out where the rule leaves gold out. Their
    consensus may have moved, so a build now may keep or drop them. Rules never built, and weak
    rules (no campaigns), are not listed.
    """
    last_built = (
        DatasetVersion.objects.filter(rule=OuterRef("pk"))
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    # One filter() call, so the gold test reads the same rule row the join picked.
    new_items = (
        Judgment.objects.filter(
            Q(item__is_gold=False) | Q(campaign__dataset_rules__exclude_gold=False),
            campaign__dataset_rules=OuterRef("pk"),
            skipped=False,
            excluded=False,
            created_at__gt=OuterRef("last_built_at"),
        )
        .order_by()
        .values("campaign__dataset_rules")
        .annotate(n=Count("item_id", distinct=True))
        .values("n")
    )
    return (
        DatasetRule.objects.annotate(
            last_built_at=Subquery(last_built), new_items=Subquery(new_items)
        )
        .filter(new_items__gt=0)
        .order_by("-new_items", "name", "id")
    )


@dataclass
class Preview:
    stages: list[Stage]
    entry_count: int
    train_count: int
    validation_count: int
    prompt_count: int
    sample: list[dict] = field(default_factory=list)
    dropped_samples: list[dict] = field(default_factory=list)


def _candidate_cards(ids: list[int]) -> dict[int, dict]:
    rows = Candidate.objects.filter(pk__in=ids).select_related("model_version", "source")
    return {
        c.pk: {
            "candidate_id": c.pk,
            "kind": c.kind,
            "file_url": media_url(c.file),
            "source_url": media_url(c.source.file) if c.source_id else "",
            "prompt": c.raw_prompt,
            "model_version": c.model_version.name if c.model_version_id else "",
            "motion_score": c.motion_score,
        }
        for c in rows
    }


def _spread(ids: list[int], size: int) -> list[int]:
    """A fixed, well-mixed sample: the ids whose hashes come first."""
    return sorted(ids, key=lambda i: hashlib.sha256(str(i).encode()).digest())[:size]


def dataset_rule_preview(*, spec: RuleSpec, sample_size: int = SAMPLE_SIZE) -> Preview:
    """What building the rule now would give: counts kept and dropped per condition, split
    sizes, a sample of kept candidates and a few dropped by each condition.

    Perceptual hashes are computed in memory and not stored (a preview writes nothing).
    """
    selection = curation.select(spec, store_fingerprints=False)
    sample_ids = _spread(selection.kept_ids, sample_size)
    sampled = set(sample_ids)
    by_id = {
        e.candidate_id: e
        for chunk in curation.planned_entries(
            selection, [u for u in selection.units if u.candidate_id in sampled]
        )
        for e in chunk
    }
    dropped = curation.dropped_by_stage(selection)
    dropped_ids = {stage: _spread(ids, DROPPED_SAMPLE_PER_STAGE) for stage, ids in dropped.items()}
    cards = _candidate_cards(sample_ids + [i for ids in dropped_ids.values() for i in ids])
    sample = []
    for candidate_id in sample_ids:
        entry = by_id[candidate_id]
        sample.append(
            {
                **cards[candidate_id],
                "split": entry.split,
                "caption": entry.caption,
                "label": entry.label,
                "confidence": entry.confidence,
            }
        )
    labels = {s.key: s.label for s in selection.stages}
    dropped_samples = [
        {
            "stage": stage,
            "label": labels[stage],
            "count": len(dropped[stage]),
            "candidates": [cards[i] for i in ids if i in cards],
        }
        for stage, ids in dropped_ids.items()
    ]
    dropped_samples.sort(key=lambda d: [s.key for s in selection.stages].index(d["stage"]))
    return Preview(
        stages=selection.stages,
        entry_count=len(selection.units),
        train_count=selection.train_count,
        validation_count=len(selection.units) - selection.train_count,
        prompt_count=selection.prompt_count,
        sample=sample,
        dropped_samples=dropped_samples,
    )


def dataset_version_list(
    *,
    rule: int | None = None,
    purpose: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> QuerySet[DatasetVersion]:
    filters = Q()
    if rule is not None:
        filters &= Q(rule_id=rule)
    if purpose:
        filters &= Q(purpose=purpose)
    if status:
        filters &= Q(status=status)
    if kind:
        filters &= Q(kind=kind)
    # The rule's training trigger is joined in (at most one per version, a unique constraint):
    # the versions API shows each version's, in the page's one query.
    return (
        DatasetVersion.objects.annotate(
            rule_trigger=FilteredRelation(
                "training_triggers", condition=Q(training_triggers__origin=TriggerOrigin.RULE)
            ),
            # A version without a rule trigger gets no ``rule_trigger`` attribute at all; this
            # says the join ran, so reading none needs no query.
            rule_trigger_joined=Value(True),
        )
        .select_related("rule", "built_by", "published_by", "rule_trigger")
        .filter(filters)
    )


def dataset_version_entries(*, version: DatasetVersion, split: str | None = None):
    qs = DatasetEntry.objects.filter(version=version).order_by("position")
    return qs.filter(split=split) if split else qs


@dataclass
class VersionDiff:
    old: DatasetVersion
    new: DatasetVersion
    added_count: int
    removed_count: int
    changed_count: int
    unchanged_count: int
    added: list[int]
    removed: list[int]
    changed: list[dict]


_DIFF_FIELDS = ("label", "confidence", "labels", "split", "caption")


def _diff_rows(version: DatasetVersion) -> dict[int, tuple]:
    rows = DatasetEntry.objects.filter(version=version).values_list("candidate_id", *_DIFF_FIELDS)
    return {row[0]: row[1:] for row in rows.iterator(chunk_size=10000)}


def dataset_version_diff(
    *, old: DatasetVersion, new: DatasetVersion, limit: int = 500
) -> VersionDiff:
    """Entries added, removed and changed (label, labels, split or caption) from ``old`` to
    ``new``; both versions must come from the same rule. Lists are cut at ``limit``."""
    from django.core.exceptions import ValidationError

    if old.rule_id != new.rule_id:
        raise ValidationError(
            {
                "other": [
                    f"Versions {old.pk} and {new.pk} come from different rules; a diff "
                    "compares versions of one rule."
                ]
            }
        )
    before, after = _diff_rows(old), _diff_rows(new)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = []
    for candidate_id in sorted(set(before) & set(after)):
        if before[candidate_id] != after[candidate_id]:
            fields = [
                f
                for f, a, b in zip(
                    _DIFF_FIELDS, before[candidate_id], after[candidate_id], strict=True
                )
                if a != b
            ]
            changed.append(
                {
                    "candidate_id": candidate_id,
                    "fields": fields,
                    "old": dict(zip(_DIFF_FIELDS, before[candidate_id], strict=True)),
                    "new": dict(zip(_DIFF_FIELDS, after[candidate_id], strict=True)),
                }
            )
    common = len(set(before) & set(after))
    return VersionDiff(
        old=old,
        new=new,
        added_count=len(added),
        removed_count=len(removed),
        changed_count=len(changed),
        unchanged_count=common - len(changed),
        added=added[:limit],
        removed=removed[:limit],
        changed=changed[:limit],
    )


def dataset_export_list(*, version: int | None = None) -> QuerySet[DatasetExport]:
    qs = DatasetExport.objects.select_related("version__rule", "requested_by")
    return qs.filter(version_id=version) if version is not None else qs


def export_progress(*, export_ids: list[int]) -> list[dict]:
    """The live counters the exports page polls for; one query."""
    return list(
        DatasetExport.objects.filter(pk__in=export_ids).values(
            "id", "status", "total", "done", "size_bytes", "sha256", "error"
        )
    )


def export_totals_by_status() -> dict[str, dict]:
    """Per status present: the number of exports and their entries to write and written
    (``exports``, ``total``, ``done``); one query over the export table."""
    rows = (
        DatasetExport.objects.order_by()
        .values("status")
        .annotate(exports=Count("id"), total=Sum("total"), done=Sum("done"))
    )
    return {row.pop("status"): row for row in rows}


def audit_events(
    *, version: int | None = None, export: int | None = None, action: str | None = None
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.select_related("actor", "version__rule", "export")
    if version is not None:
        qs = qs.filter(version_id=version)
    if export is not None:
        qs = qs.filter(export_id=export)
    if action:
        qs = qs.filter(action=action)
    return qs


def training_triggers(*, version: DatasetVersion) -> QuerySet[TrainingTrigger]:
    """Every trigger that fired on the version: its rule's and pipelines' (oldest first)."""
    return TrainingTrigger.objects.filter(version=version).order_by("created_at", "id")


def rule_trigger(version: DatasetVersion) -> TrainingTrigger | None:
    """The trigger the version's rule fired on publish, if any; joined in already when the
    version came from ``dataset_version_list``."""
    if getattr(version, "rule_trigger_joined", False):
        return getattr(version, "rule_trigger", None)
    return TrainingTrigger.objects.filter(version=version, origin=TriggerOrigin.RULE).first()


def weak_source_list() -> QuerySet[WeakSource]:
    return WeakSource.objects.all()


def weak_import_list(*, source: int | None = None) -> QuerySet[WeakImport]:
    qs = WeakImport.objects.select_related("source", "requested_by")
    return qs.filter(source_id=source) if source is not None else qs
