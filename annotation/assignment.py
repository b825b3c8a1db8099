"""The statements behind leasing and submitting: few round trips, bounded work per call.

Two forms of one algorithm:

- On PostgreSQL, one rating step (submit one item, lease the next ones, read what they show) is
  one call of the SQL function ``annotation_rate_step``, whose text is in the migration
  ``annotation/migrations/0004_rate_step_enhanced_prompt.py``. Measured on the 2-core machine under
  load, the same step as nine statements from Python spent most of its time in round trips
  (about 1 ms each with every core busy) and in planning the pick; in PL/pgSQL the step is one
  round trip, runs in its own transaction (no BEGIN/COMMIT trips) and its statements keep their
  plans.
- Elsewhere (SQLite for ``make run``), and on PostgreSQL when
  ``ANNOTATION_RATE_STEP_IN_DATABASE`` is off, ``annotation.services.rating`` runs the helpers
  below inside one transaction. The tests run both forms against PostgreSQL.

Locks: the rater's membership row is locked first (``FOR NO KEY UPDATE``), which serialises one
rater's concurrent requests in a campaign, so the "never seen by this rater" tests cannot race
with that rater's own requests. Other raters are kept apart by the item rows (``FOR NO KEY UPDATE
SKIP LOCKED``, which does not block the foreign-key checks of concurrent inserts), by the unique
(item, rater) indexes of leases and judgments, and by the check constraint
``item_not_over_assigned``.

The pick: open items (judgments + live leases < target) sit in the partial index
``item_open_queue`` on (campaign, judgment_count DESC, created_at, id). Walking that index and
testing "not seen by this rater" row by row degrades as the rater's own judged items pile up at
the head (one rater with overlap 3 leaves every item they judged at level 1, ahead of all the
unjudged ones). So the pick looks at each completion level from the top, and in each level at a
window of at most ``PICK_WINDOW`` items, oldest first; the first unseen, unlocked items win. A
level whose window is full of the rater's own items is passed over for the next level down; only
when every window comes back empty does an unbounded scan run, so an item is found whenever one
exists. Ordering by created_at (not id) leaves the partial index the only sorted path, so the
planner cannot prefer a filtered walk of the primary key. The "not seen" tests carry ``OFFSET 0``,
which keeps PostgreSQL from pulling them up into anti-joins (a LIMIT would be dropped): they stay
per-row probes of the unique (item, rater) indexes. As anti-joins the planner, misled by a
level's row estimate, read all of the rater's leases and judgments for every row (measured: 6 to
10 ms per level for a rater with 1,300 judgments, against 0.3 ms).
"""

import json
from datetime import datetime

from django.db import connection

# Items examined per completion level before moving down a level. 32 raters picking at once
# lock at most 32 rows, so a window of 64 always has an unlocked row to offer.
PICK_WINDOW = 64
# Raised by annotation_rate_step for a late submit to an item that filled up meanwhile.
ITEM_FULL_SQLSTATE = "SL409"

# The columns ``annotation.selectors`` turns into what the rating screen shows.
PAYLOAD_COLUMNS = (
    "item_id",
    "position",
    "side",
    "id",
    "kind",
    "file",
    "width",
    "height",
    "frame_count",
    "raw_prompt",
    "enhanced_prompt",
    "motion_prompt",
    "params",
    "frames_prefix",
    "source_file",
)
PAYLOAD_SQL = (
    "SELECT ic.item_id, ic.position, ic.side, c.id, c.kind, c.file, c.width, c.height,"
    " c.frame_count, c.raw_prompt, c.enhanced_prompt, c.motion_prompt, c.params,"
    " c.frames_prefix,"
    " (SELECT s.file FROM generation_candidate s WHERE s.id = c.source_id)"
    " FROM annotation_itemcandidate ic"
    " JOIN generation_candidate c ON c.id = ic.candidate_id"
    " WHERE ic.item_id IN ({ids}) ORDER BY ic.item_id, ic.position"
)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _lock(*, of: str = "", skip_locked: bool = False) -> str:
    if not is_postgres():
        return ""
    clause = " FOR NO KEY UPDATE"
    if of:
        clause += f" OF {of}"
    if skip_locked:
        clause += " SKIP LOCKED"
    return clause


def _probe() -> str:
    """Keeps a NOT EXISTS a per-row probe on PostgreSQL (see the module docstring); SQLite
    does not take OFFSET without LIMIT and plans these as probes anyway."""
    return " OFFSET 0" if is_postgres() else ""


def payload_rows(item_ids: list[int]) -> list[dict]:
    if not item_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(PAYLOAD_SQL.format(ids=", ".join(["%s"] * len(item_ids))), item_ids)
        return [dict(zip(PAYLOAD_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


# The step in the database (PostgreSQL) ----------------------------------------------------------


def rate_step_function_call(
    *,
    campaign_id: int,
    rater_id: int,
    item_id: int | None,
    answers_json: str | None,
    seconds_on_item: float | None,
    client_id: str | None,
    skipped: bool,
    skip_reason: str,
    fetch: int,
    max_held: int,
    gold_slots: int,
) -> dict:
    """Run ``annotation_rate_step``; a unique violation raises IntegrityError (nothing stored)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT annotation_rate_step(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                campaign_id,
                rater_id,
                item_id,
                answers_json,
                seconds_on_item,
                client_id,
                skipped,
                skip_reason,
                fetch,
                max_held,
                gold_slots,
                PICK_WINDOW,
            ],
        )
        raw = cursor.fetchone()[0]
    # Django has psycopg2 hand jsonb back as text.
    result = json.loads(raw) if isinstance(raw, str) else raw
    result["rows"] = [
        dict(zip(PAYLOAD_COLUMNS, row, strict=True)) for row in result.get("rows", [])
    ]
    return result


# The step from Python (SQLite, or with ANNOTATION_RATE_STEP_IN_DATABASE off) ---------------------


def membership_lock(*, campaign_id: int, rater_id: int) -> tuple | None:
    """Lock the rater's membership row; return (membership status, paused reason, campaign
    status, live leases held) or None when the rater is not a member."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.status, m.paused_reason, c.status,"
            " (SELECT COUNT(*) FROM annotation_lease l WHERE l.rater_id = m.rater_id"
            "  AND l.campaign_id = m.campaign_id AND NOT l.released)"
            " FROM annotation_campaignmembership m"
            " JOIN annotation_campaign c ON c.id = m.campaign_id"
            " WHERE m.campaign_id = %s AND m.rater_id = %s" + _lock(of="m"),
            [campaign_id, rater_id],
        )
        return cursor.fetchone()


def lease_lock(*, campaign_id: int, item_id: int, rater_id: int) -> tuple[bool, bool, bool] | None:
    """Lock the rater's lease and the item; return (lease released, item is gold, item has room)
    or None when the rater holds no lease on the item."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.released, i.is_gold,"
            " (i.is_gold OR i.judgment_count + i.leased_count < i.overlap_target)"
            " FROM annotation_lease l JOIN annotation_item i ON i.id = l.item_id"
            " WHERE l.item_id = %s AND l.rater_id = %s AND l.campaign_id = %s" + _lock(),
            [item_id, rater_id, campaign_id],
        )
        row = cursor.fetchone()
    return (bool(row[0]), bool(row[1]), bool(row[2])) if row else None


def judgment_store(
    *,
    campaign_id: int,
    item_id: int,
    rater_id: int,
    answers_json: str,
    seconds_on_item: float,
    client_id: str,
    skipped: bool,
    skip_reason: str,
    lease_released: bool,
    is_gold: bool,
    now: datetime,
) -> int:
    """Delete the lease, move the item's counters and insert the judgment; return its id.

    Assumes ``lease_lock`` found the lease and, for a released lease, room on the item. An
    (item, rater) or (client id, rater) clash raises IntegrityError.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM annotation_lease"
            " WHERE item_id = %s AND rater_id = %s AND campaign_id = %s",
            [item_id, rater_id, campaign_id],
        )
        cursor.execute(
            "UPDATE annotation_item SET judgment_count = judgment_count + %s,"
            " leased_count = leased_count - %s WHERE id = %s",
            [0 if skipped else 1, 0 if (is_gold or lease_released) else 1, item_id],
        )
        cursor.execute(
            "INSERT INTO annotation_judgment (item_id, rater_id, campaign_id, answers,"
            " seconds_on_item, client_id, skipped, skip_reason, excluded, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [
                item_id,
                rater_id,
                campaign_id,
                answers_json,
                seconds_on_item,
                client_id if is_postgres() else client_id.replace("-", ""),
                skipped,
                skip_reason,
                False,
                now,
            ],
        )
        return cursor.fetchone()[0]


_PICK_LEVEL_SQL = """(
    SELECT w.id, {level} AS level, w.created_at FROM (
        SELECT id, created_at FROM annotation_item
        WHERE campaign_id = %(campaign)s AND is_open AND judgment_count = {level}
        ORDER BY judgment_count DESC, created_at, id
        LIMIT %(window)s
    ) w
    WHERE NOT EXISTS (
        SELECT 1 FROM annotation_lease l WHERE l.item_id = w.id AND l.rater_id = %(rater)s OFFSET 0)
      AND NOT EXISTS (
        SELECT 1 FROM annotation_judgment j
        WHERE j.item_id = w.id AND j.rater_id = %(rater)s OFFSET 0)
)"""


def _pick_sql(top_level: int) -> str:
    # One branch per level, the level a literal so each branch plans as an index range scan;
    # each reads at most a window, so sorting their union stays cheap.
    branches = "\nUNION ALL\n".join(
        _PICK_LEVEL_SQL.format(level=level) for level in range(top_level, -1, -1)
    )
    return (
        f"SELECT i.id FROM ({branches}) AS cand"
        " JOIN annotation_item i ON i.id = cand.id"
        " WHERE i.is_open ORDER BY cand.level DESC, cand.created_at, cand.id"
        " LIMIT %(count)s FOR NO KEY UPDATE OF i SKIP LOCKED"
    )


def items_pick(*, campaign_id: int, rater_id: int, count: int, top_level: int) -> list[int]:
    """Lock up to ``count`` open items the rater has never seen, closest to completion first.

    ``top_level`` is the highest judgment count an open item can have (max overlap - 1).
    Assumes: in a transaction, the rater's membership row locked.
    """
    if count <= 0:
        return []
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                _pick_sql(top_level),
                {"campaign": campaign_id, "rater": rater_id, "window": PICK_WINDOW, "count": count},
            )
            ids = [row[0] for row in cursor.fetchall()]
        if ids:
            return ids
    return items_pick_unbounded(campaign_id=campaign_id, rater_id=rater_id, count=count)


def items_pick_unbounded(*, campaign_id: int, rater_id: int, count: int) -> list[int]:
    """The plain form of the pick: correct everywhere, but its cost grows with the number of
    open items the rater has already seen. Runs only when the windows found nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.id FROM annotation_item i"
            " WHERE i.campaign_id = %s AND i.is_open"
            " AND NOT EXISTS (SELECT 1 FROM annotation_lease l"
            "  WHERE l.item_id = i.id AND l.rater_id = %s" + _probe() + ")"
            " AND NOT EXISTS (SELECT 1 FROM annotation_judgment j"
            "  WHERE j.item_id = i.id AND j.rater_id = %s" + _probe() + ")"
            " ORDER BY i.judgment_count DESC, i.created_at, i.id LIMIT %s"
            + _lock(skip_locked=True),
            [campaign_id, rater_id, rater_id, count],
        )
        return [row[0] for row in cursor.fetchall()]


def gold_pick(*, campaign_id: int, rater_id: int) -> int | None:
    """A gold item the rater has never seen, or None. Gold items have no capacity to lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.id FROM annotation_item i WHERE i.campaign_id = %s AND i.is_gold"
            " AND NOT EXISTS (SELECT 1 FROM annotation_lease l"
            "  WHERE l.item_id = i.id AND l.rater_id = %s" + _probe() + ")"
            " AND NOT EXISTS (SELECT 1 FROM annotation_judgment j"
            "  WHERE j.item_id = i.id AND j.rater_id = %s" + _probe() + ")"
            " ORDER BY i.id LIMIT 1",
            [campaign_id, rater_id, rater_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def leases_grant(
    *,
    campaign_id: int,
    rater_id: int,
    item_ids: list[int],
    gold_ids: list[int],
    expires_at: datetime,
    now: datetime,
) -> None:
    """Insert leases on ``item_ids`` (locked by the caller) and ``gold_ids``; count the slots."""
    every = [*item_ids, *gold_ids]
    if not every:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO annotation_lease (item_id, rater_id, campaign_id, expires_at, released,"
            " created_at) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(every)),
            [
                v
                for item_id in every
                for v in (item_id, rater_id, campaign_id, expires_at, False, now)
            ],
        )
        if item_ids:
            cursor.execute(
                "UPDATE annotation_item SET leased_count = leased_count + 1 WHERE id IN ("
                + ", ".join(["%s"] * len(item_ids))
                + ")",
                item_ids,
            )
