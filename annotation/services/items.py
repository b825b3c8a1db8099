"""Items of a campaign: adding candidate groups, and an item's overlap target."""

import hashlib
import random
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet

from annotation.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Item,
    ItemCandidate,
    Side,
)
from annotation.services.campaigns import campaign_lock
from generation.models import Candidate, CandidateKind
from stickerloop.errors import ServiceConflict

GROUP_SIZES = {
    CampaignKind.SINGLE: (1, 1),
    CampaignKind.PAIR: (2, 2),
    CampaignKind.BEST_OF_N: (2, 8),
    CampaignKind.SET: (2, 12),
}


def _group_errors(kind: str, index: int, group: Sequence[Candidate]) -> list[str]:
    low, high = GROUP_SIZES[kind]
    where = f"Group {index + 1}"
    if not low <= len(group) <= high:
        size = f"{low}" if low == high else f"{low} to {high}"
        return [f"{where}: a {kind} item shows {size} candidate(s), not {len(group)}."]
    if len({c.pk for c in group}) != len(group):
        return [f"{where}: a candidate appears twice."]
    if kind == CampaignKind.BEST_OF_N:
        if any(c.kind != CandidateKind.ANIMATION for c in group):
            return [f"{where}: best-of-N items show animations."]
        if len({c.source_id for c in group}) != 1:
            return [f"{where}: best-of-N animations must come from one source sticker."]
    if kind == CampaignKind.SET and len({c.prompt_id or c.raw_prompt for c in group}) != 1:
        return [f"{where}: a set shows candidates of one prompt."]
    return []


def _group_key(kind: str, group: Sequence[Candidate]) -> str:
    first = group[0]
    if kind == CampaignKind.PAIR:
        return f"prompt={first.prompt_id} source={first.source_id} seed={first.seed}"
    if kind == CampaignKind.BEST_OF_N:
        return f"source={first.source_id} seed={first.seed}"
    if kind == CampaignKind.SET:
        return f"prompt={first.prompt_id} model={first.model_version_id}"
    return ""


def _refuse_over_limit(campaign: Campaign, adding: int) -> None:
    """Refuse, before anything is inserted, items that would take the campaign over
    ``settings.CAMPAIGN_MAX_ITEMS``. Assumes the caller holds the campaign row locked."""
    limit = settings.CAMPAIGN_MAX_ITEMS
    held = Item.objects.filter(campaign=campaign).count()
    if held + adding > limit:
        raise ValidationError(
            {
                "items": [
                    f"The campaign would hold {held + adding:,} items ({held:,} now, {adding:,} "
                    f"new); the limit is {limit:,} items (STICKERLOOP_CAMPAIGN_MAX_ITEMS)."
                ]
            }
        )


@transaction.atomic
def campaign_items_add(
    *,
    campaign: Campaign,
    candidate_groups: list[list[Candidate]],
    seed: int | None = None,
    gold_answers: list[dict] | None = None,
) -> list[Item]:
    """One item per group; each group's display order is shuffled (seeded) and recorded.

    The items are also created in a shuffled order (same seed): raters see item ids, and the
    rating step serves items oldest first, while groups come grouped by how they were built (a
    set campaign's by prompt and model, a single campaign's by candidate id, which follows the
    model that made the chunk). So neither ids nor serving order say which model made an item.
    The returned items follow ``candidate_groups``, one per group.

    With ``gold_answers`` (one per group) the items are gold: their known answers are checked
    against the schema, they are served at the campaign's gold rate and consume no overlap.
    """
    from annotation.schema import validate_answers

    campaign = campaign_lock(campaign)
    if campaign.status == CampaignStatus.CLOSED:
        raise ServiceConflict(f"Campaign {campaign.name!r} is closed.")
    if not candidate_groups:
        raise ValidationError({"candidate_groups": ["Give at least one group of candidates."]})
    errors = [e for i, g in enumerate(candidate_groups) for e in _group_errors(campaign.kind, i, g)]
    if errors:
        raise ValidationError({"candidate_groups": errors[:20]})
    _refuse_over_limit(campaign, len(candidate_groups))
    rng = random.Random(seed)
    orders = []
    for group in candidate_groups:
        order = list(group)
        rng.shuffle(order)
        orders.append(order)
    clean_gold: list[dict | None] = [None] * len(orders)
    if gold_answers is not None:
        if len(gold_answers) != len(orders):
            raise ValidationError(
                {
                    "gold_answers": [
                        f"Give one answer set per group: {len(orders)}, not {len(gold_answers)}."
                    ]
                }
            )
        for index, (answers, order) in enumerate(zip(gold_answers, orders, strict=True)):
            try:
                clean_gold[index] = validate_answers(
                    campaign.question_schema, answers, candidate_ids=[c.pk for c in order]
                )
            except ValidationError as exc:
                raise ValidationError(
                    {
                        f"gold_answers.{index}.{k.removeprefix('answers.')}": v
                        for k, v in exc.message_dict.items()
                    }
                ) from exc
    # Drawn after the display orders, so a seed shows each group as it did before items were
    # created in shuffled order. bulk_create gives ids and created_at in list order.
    creation = list(range(len(orders)))
    rng.shuffle(creation)
    created = Item.objects.bulk_create(
        [
            Item(
                campaign=campaign,
                is_gold=clean_gold[index] is not None,
                gold_answers=clean_gold[index],
                overlap_target=campaign.overlap,
                group_key=_group_key(campaign.kind, orders[index]),
            )
            for index in creation
        ]
    )
    ItemCandidate.objects.bulk_create(
        [
            ItemCandidate(
                item=item,
                candidate=candidate,
                position=position,
                side=(Side.LEFT if position == 0 else Side.RIGHT)
                if campaign.kind == CampaignKind.PAIR
                else Side.ONLY,
            )
            for item, index in zip(created, creation, strict=True)
            for position, candidate in enumerate(orders[index])
        ]
    )
    by_group = dict(zip(creation, created, strict=True))
    return [by_group[index] for index in range(len(orders))]


@dataclass
class Selection:
    batches: list[int] = field(default_factory=list)
    model_versions: list[int] = field(default_factory=list)
    prompt_tags: list[str] = field(default_factory=list)
    candidate_kind: str | None = None


def selection_check(
    *,
    campaign: Campaign,
    batches: Sequence[int] = (),
    model_versions: Sequence[int] = (),
    prompt_tags: Sequence[str] = (),
    candidate_kind: str | None = None,
    group_size: int | None = None,
) -> Selection:
    """The selection's fields checked against the campaign, before anything is read or stored:
    the request's own mistakes (ValidationError naming the field). What the candidates
    themselves allow is found when the items are made."""
    selection = Selection(
        batches=sorted(set(batches)),
        model_versions=sorted(set(model_versions)),
        prompt_tags=sorted(set(prompt_tags)),
        candidate_kind=candidate_kind,
    )
    if candidate_kind is not None and candidate_kind not in CandidateKind.values:
        raise ValidationError({"candidate_kind": [f"Unknown kind {candidate_kind!r}."]})
    if group_size is not None:
        if campaign.kind not in (CampaignKind.BEST_OF_N, CampaignKind.SET):
            raise ValidationError(
                {"group_size": ["Only best-of-N and set campaigns take a group size."]}
            )
        low, high = GROUP_SIZES[campaign.kind]
        if not low <= group_size <= high:
            raise ValidationError({"group_size": [f"Must be from {low} to {high}."]})
    if not (selection.batches or selection.model_versions or selection.prompt_tags):
        raise ValidationError({"selection": ["Choose batches, model versions or prompt tags."]})
    return selection


def selection_size(selection: Selection) -> int:
    """How many candidates the selection holds (an upper bound of the items it makes)."""
    return _selection_queryset(selection).count()


def _selection_queryset(selection: Selection) -> QuerySet[Candidate]:
    qs = Candidate.objects.all()
    if selection.batches:
        qs = qs.filter(batch_id__in=selection.batches)
    if selection.model_versions:
        qs = qs.filter(model_version_id__in=selection.model_versions)
    if selection.prompt_tags:
        qs = qs.filter(prompt__tags__name__in=selection.prompt_tags).distinct()
    if selection.candidate_kind:
        qs = qs.filter(kind=selection.candidate_kind)
    return qs


def _selected_candidates(selection: Selection) -> list[Candidate]:
    return list(_selection_queryset(selection).order_by("id"))


# The seeded creation order of single items, in SQL: the first 64 bits of md5("<seed>:<id>") as a
# signed bigint, ties (never seen, but possible) broken by candidate id. A bigint sorts much
# faster than the 32-character hex text, which would also be compared under the database's
# collation. ``single_creation_key`` is the same key in Python, for tests and readers.
_CREATION_KEY_SQL = "('x' || left(md5(%s || ':' || {id}::text), 16))::bit(64)::bigint"


# The foreign-key checks at commit lock each linked candidate row (FOR KEY SHARE) in the order
# the links were inserted: the seeded order above, which is random over the candidate table.
# Where that table is larger than PostgreSQL's shared buffers, each lock dirtied a page read back
# from the disk cache, wrote it out again, and after every checkpoint logged the whole page:
# at 10,000,000 items, 79 GB of write-ahead log and 248 s of commit. Taking the same locks first,
# in candidate id order (the table's own order, as candidates are stored by batch), dirties each
# page once, in sequence; the checks then find the row locked by this transaction already and
# only read it. Measured at 10,000,000 items: 12 GB of log; bench/campaign_items.py 365.4 s
# before, 251.7 s after (no difference at 1,000,000, where the candidates stay in memory).
# The locks also keep a selected candidate from being deleted before the items commit.
_CANDIDATES_LOCKED_SQL = """
    SELECT count(*) AS n
    FROM (SELECT candidate_id FROM picked ORDER BY candidate_id) p
    CROSS JOIN LATERAL (
        SELECT 1 FROM {candidate} c WHERE c.id = p.candidate_id FOR KEY SHARE
    ) row_locked
"""


def single_creation_key(seed: int, candidate_id: int) -> tuple[int, int]:
    """Where a single campaign's item for ``candidate_id`` comes in creation (id) order."""
    digest = hashlib.md5(f"{seed}:{candidate_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True), candidate_id


def _single_items_insert(*, campaign: Campaign, selection: Selection, seed: int) -> QuerySet[Item]:
    """One item per selected candidate not yet in the campaign, inserted set-based.

    What ``campaign_items_add`` does for groups of one, without loading a candidate into
    Python: items get the campaign's overlap target, an empty group key and their candidate at
    position 0 with no side; they are created in the seeded order of ``_CREATION_KEY_SQL``
    rather than by candidate id (which follows the model that made a chunk), so neither item ids
    nor the serving order (oldest first, then by id) say which model made an item.

    One statement: ``picked`` draws the item ids from the item sequence in that order (the
    sorted subquery is not flattened, so ``nextval`` runs after the sort; the sequence is looked
    up once, in an init plan) and is materialised once; both tables are filled from it, and
    ``locked`` locks the selected candidates (see ``_CANDIDATES_LOCKED_SQL``). Checks the
    selection and the limit first; assumes the caller's transaction, so a failure part way
    leaves nothing. Returns the new items, lazily, in candidate id order as
    ``campaign_items_add`` returns its groups. Elsewhere than PostgreSQL (SQLite under
    ``make run``) the same checks lead to ``_single_items_insert_with_orm``.

    Measured at 10,000,000 items on the quiet 2-core machine (``bench/campaign_items.py``):
    251.7 s, about 120 s of it the statement (the two inserts with their eight indexes the most)
    and the rest PostgreSQL's row-by-row checks of the three foreign keys at commit.
    """
    campaign = campaign_lock(campaign)
    selected_sql, selected_params = (
        _selection_queryset(selection).order_by().values("id").query.sql_with_params()
    )
    item, link = Item._meta.db_table, ItemCandidate._meta.db_table
    new_sql = (
        f"SELECT s.id FROM ({selected_sql}) s WHERE NOT EXISTS ("
        f"SELECT 1 FROM {link} l JOIN {item} i ON i.id = l.item_id"
        " WHERE l.candidate_id = s.id AND i.campaign_id = %s AND NOT i.is_gold)"
    )
    new_params = [*selected_params, campaign.pk]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({new_sql}) n", new_params)
        adding = cursor.fetchone()[0]
        if not adding:
            cursor.execute(f"SELECT EXISTS ({selected_sql})", selected_params)
            if not cursor.fetchone()[0]:
                raise ValidationError({"selection": ["The selection matches no candidates."]})
            raise ValidationError(
                {
                    "selection": [
                        "The selection makes no new items. "
                        "Every candidate it groups is in the campaign already."
                    ]
                }
            )
        if campaign.status == CampaignStatus.CLOSED:
            raise ServiceConflict(f"Campaign {campaign.name!r} is closed.")
        _refuse_over_limit(campaign, adding)
        if connection.vendor != "postgresql":
            return _single_items_insert_with_orm(
                campaign=campaign,
                candidate_ids=_fetched_ids(cursor, new_sql, new_params),
                seed=seed,
            )
        key = _CREATION_KEY_SQL.format(id="n.id")
        locked = _CANDIDATES_LOCKED_SQL.format(candidate=Candidate._meta.db_table)
        cursor.execute(
            f"""
            WITH picked AS MATERIALIZED (
                SELECT nextval((SELECT pg_get_serial_sequence(%s, 'id')::regclass)) AS item_id,
                       id AS candidate_id
                FROM (SELECT n.id FROM ({new_sql}) n ORDER BY {key}, n.id) ordered
            ), items AS (
                INSERT INTO {item} (id, campaign_id, is_gold, overlap_target, judgment_count,
                                    leased_count, group_key, created_at)
                SELECT item_id, %s, false, %s, 0, 0, '', now() FROM picked
            ), links AS (
                INSERT INTO {link} (item_id, candidate_id, position, side)
                SELECT item_id, candidate_id, 0, %s FROM picked
            ), locked AS ({locked})
            SELECT min(item_id), max(item_id), (SELECT n FROM locked) FROM picked
            """,
            [item, *new_params, str(seed), campaign.pk, campaign.overlap, Side.ONLY],
        )
        # ``locked`` is a plain SELECT, which PostgreSQL runs only where it is read: here.
        first, last, _locked = cursor.fetchone()
    # Items are only made with the campaign row locked (here and in campaign_items_add), so
    # every item of the campaign in [first, last] is one made here.
    return Item.objects.filter(campaign=campaign, pk__range=(first, last)).order_by(
        "item_candidates__candidate_id"
    )


def _fetched_ids(cursor, sql: str, params: list) -> list[int]:
    cursor.execute(sql, params)
    return [row[0] for row in cursor.fetchall()]


def _single_items_insert_with_orm(
    *, campaign: Campaign, candidate_ids: list[int], seed: int
) -> QuerySet[Item]:
    """``_single_items_insert``'s items, in the same creation order, made from Python: the
    embedded database of ``make run`` (SQLite) has no sequences to draw ids from in a sorted
    statement. Campaigns there are small enough to hold their candidate ids in memory."""
    ordered = sorted(
        candidate_ids, key=lambda candidate_id: single_creation_key(seed, candidate_id)
    )
    items = Item.objects.bulk_create(
        [Item(campaign=campaign, overlap_target=campaign.overlap, group_key="") for _ in ordered]
    )
    ItemCandidate.objects.bulk_create(
        [
            ItemCandidate(item=item, candidate_id=candidate_id, position=0, side=Side.ONLY)
            for item, candidate_id in zip(items, ordered, strict=True)
        ]
    )
    # As in _single_items_insert, no other items of the campaign are made meanwhile (SQLite
    # holds its write lock to the commit), so the id range is these items.
    return Item.objects.filter(campaign=campaign, pk__range=(items[0].pk, items[-1].pk)).order_by(
        "item_candidates__candidate_id"
    )


def _best_of_n_groups(
    candidates: list[Candidate], group_size: int | None
) -> tuple[list[list[Candidate]], list[str]]:
    """Items of animations of one source sticker, one animation per model and seed.

    Without ``group_size``: one item per source and seed, holding every model's animation of it.
    With it: items of exactly ``group_size`` animations of one source, across its seeds, ordered
    by seed then model so that each item mixes the teachers. (Grouping by seed alone, whatever
    the size asked, was why two teachers animating with two seeds gave items of 2 when 4 were
    asked for.) Animations short of a full item are left out rather than shown as a smaller
    one: a pick among 2 and a pick among 4 are not the same question.
    """
    by_source: dict[int, dict[tuple, Candidate]] = defaultdict(dict)
    for c in candidates:
        if c.kind == CandidateKind.ANIMATION and c.source_id:
            by_source[c.source_id].setdefault((c.seed, c.model_version_id or 0), c)
    groups: list[list[Candidate]] = []
    if group_size is None:
        for source in sorted(by_source):
            by_seed: dict[int, list[Candidate]] = defaultdict(list)
            for (seed, _), c in sorted(by_source[source].items()):
                by_seed[seed].append(c)
            groups.extend(
                members[: GROUP_SIZES[CampaignKind.BEST_OF_N][1]]
                for members in by_seed.values()
                if len(members) >= 2
            )
        return groups, []
    left_over = 0
    for source in sorted(by_source):
        members = [c for _, c in sorted(by_source[source].items())]
        full = len(members) - len(members) % group_size
        groups.extend(members[start : start + group_size] for start in range(0, full, group_size))
        left_over += len(members) - full
    notes = (
        [f"{left_over} animation(s) did not fill an item of {group_size} from their source."]
        if left_over
        else []
    )
    return groups, notes


def _groups_for(
    kind: str, candidates: list[Candidate], selection: Selection, group_size: int | None
) -> tuple[list[list[Candidate]], list[str]]:
    """Group selected candidates into items; the second value lists what could not be grouped."""
    if kind == CampaignKind.SINGLE:
        return [[c] for c in candidates], []
    if kind == CampaignKind.PAIR:
        versions = sorted({c.model_version_id for c in candidates if c.model_version_id})
        if len(versions) != 2:
            return [], [
                f"A pair campaign compares two model versions; the selection holds {len(versions)}."
            ]
        by_key: dict[tuple, dict[int, Candidate]] = defaultdict(dict)
        for c in candidates:
            by_key[(c.prompt_id, c.source_id, c.seed)].setdefault(c.model_version_id, c)
        groups, unpaired = [], 0
        for key in sorted(by_key, key=lambda k: tuple(-1 if v is None else v for v in k)):
            pair = by_key[key]
            if len(pair) == 2:
                groups.append([pair[versions[0]], pair[versions[1]]])
            else:
                unpaired += 1
        notes = (
            [f"{unpaired} candidate(s) had no counterpart with the same prompt and seed."]
            if unpaired
            else []
        )
        return groups, notes
    if kind == CampaignKind.BEST_OF_N:
        return _best_of_n_groups(candidates, group_size)
    size = group_size or GROUP_SIZES[kind][1]
    by_prompt: dict[tuple, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_prompt[(c.prompt_id or 0, c.model_version_id or 0)].append(c)
    groups = []
    for _, members in sorted(by_prompt.items()):
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            if len(chunk) >= 2:
                groups.append(chunk)
    return groups, []


@transaction.atomic
def campaign_items_from_selection(
    *,
    campaign: Campaign,
    batches: Sequence[int] = (),
    model_versions: Sequence[int] = (),
    prompt_tags: Sequence[str] = (),
    candidate_kind: str | None = None,
    group_size: int | None = None,
    seed: int | None = None,
) -> Sequence[Item] | QuerySet[Item]:
    """Build items from a candidate selection (batches, model versions, prompt tags, kind).

    Single: one item per candidate, inserted set-based (``_single_items_insert``) so that a
    campaign of 10,000,000 items is made in one statement; the items come back as a lazy
    queryset rather than a list. Pair: the two selected model versions' candidates of the same
    prompt (or source sticker) and seed. Best-of-N: the animations of one source sticker from
    different models, per seed or ``group_size`` at a time (``_best_of_n_groups``). Set: up to
    ``group_size`` candidates of one prompt and model. Groups
    whose candidates are already in the campaign are left out, so adding a selection twice adds
    nothing the second time.
    """
    selection = selection_check(
        campaign=campaign,
        batches=batches,
        model_versions=model_versions,
        prompt_tags=prompt_tags,
        candidate_kind=candidate_kind,
        group_size=group_size,
    )
    if campaign.kind == CampaignKind.SINGLE:
        # Unseeded, a fresh seed: the order is still drawn at random, as random.Random(None).
        items = _single_items_insert(
            campaign=campaign,
            selection=selection,
            seed=secrets.randbits(62) if seed is None else seed,
        )
        Campaign.objects.filter(pk=campaign.pk).update(
            selection={**selection.__dict__, "group_size": group_size, "seed": seed}
        )
        return items
    candidates = _selected_candidates(selection)
    if not candidates:
        raise ValidationError({"selection": ["The selection matches no candidates."]})
    groups, notes = _groups_for(campaign.kind, candidates, selection, group_size)
    present = set(
        ItemCandidate.objects.filter(item__campaign=campaign, item__is_gold=False).values_list(
            "candidate_id", flat=True
        )
    )
    groups = [g for g in groups if not any(c.pk in present for c in g)]
    if not groups:
        reason = " ".join(notes) or "Every candidate it groups is in the campaign already."
        raise ValidationError({"selection": [f"The selection makes no new items. {reason}"]})
    items = campaign_items_add(campaign=campaign, candidate_groups=groups, seed=seed)
    Campaign.objects.filter(pk=campaign.pk).update(
        selection={**selection.__dict__, "group_size": group_size, "seed": seed}
    )
    return items


@transaction.atomic
def item_overlap_target_set(*, item: Item, target: int) -> Item:
    """Raise (adaptive overlap) or lower an item's target within 1..campaign.max_overlap."""
    item = Item.objects.select_for_update().select_related("campaign").get(pk=item.pk)
    if not 1 <= target <= item.campaign.max_overlap:
        raise ValidationError(
            {
                "target": [
                    f"Must be from 1 to the campaign's max overlap "
                    f"({item.campaign.max_overlap}), not {target}."
                ]
            }
        )
    if target < item.judgment_count + item.leased_count:
        raise ServiceConflict(
            f"Item {item.pk} already has {item.judgment_count} judgment(s) and "
            f"{item.leased_count} lease(s); its target cannot drop to {target}."
        )
    item.overlap_target = target
    item.save(update_fields=["overlap_target"])
    item.refresh_from_db(fields=["is_open"])
    return item
