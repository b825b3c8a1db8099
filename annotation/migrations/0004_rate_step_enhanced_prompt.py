"""The rating step ``annotation_rate_step``, copied from 0002 with one change: each payload row
carries the candidate's enhanced prompt after its raw prompt, so the rating screen shows the one
the campaign chooses (``Campaign.rater_prompt``) without another query.

The function's text lives here, not in application code, so that changing it means a new
migration and history stays as it ran. To change the step, copy this migration into a new one
and edit the copy; ``CREATE OR REPLACE`` lets it run over any earlier version. Reversed, 0002's
function comes back.
"""

import importlib

from django.db import migrations

RATE_STEP_FUNCTION = r"""
CREATE OR REPLACE FUNCTION annotation_rate_step(
    p_campaign bigint, p_rater bigint, p_item bigint, p_answers jsonb,
    p_seconds double precision, p_client_id uuid, p_skipped boolean, p_skip_reason text,
    p_fetch integer, p_max_held integer, p_gold_slots integer, p_window integer
) RETURNS jsonb
LANGUAGE plpgsql
-- Plan each statement once per connection. With the default, PostgreSQL re-planned several of
-- them on every call (measured: 1.25 ms of backend CPU per step against 0.75 ms); the generic
-- plans are the intended ones, since every sorted read has exactly one index to use.
SET plan_cache_mode = force_generic_plan
-- A generic plan does not know the window is small, so on a large campaign its cost estimate
-- crosses jit_above_cost and every call spent ~7 ms compiling expressions (measured at
-- 1,000,000 items) for queries that run in 0.1 ms.
SET jit = off
AS $fn$
-- One rating step in one transaction: submit p_item (when not null), then lease up to p_fetch
-- new items. Returns {"membership", "paused_reason", "campaign_status", "refused": reason or
-- null, "judgment_id", "created_at", "items": [ids], "rows": [payload rows]}. A refused submit
-- (no lease, closed campaign, paused rater) writes nothing; the caller explains it. A late
-- submit on a lease the sweep released, to an item that has filled up since, raises SQLSTATE
-- SL409 (nothing stays written).
DECLARE
    m_status text;
    m_reason text;
    c_status text;
    c_lease_seconds integer;
    c_max_overlap integer;
    held integer;
    l_released boolean;
    j_id bigint;
    j_created timestamptz;
    ts timestamptz := clock_timestamp();
    need integer;
    lvl integer;
    got bigint[];
    gold_id bigint;
    leased bigint[] := '{}';
    result jsonb;
BEGIN
    SELECT m.status, m.paused_reason, c.status, c.lease_seconds, c.max_overlap,
           (SELECT count(*) FROM annotation_lease l
             WHERE l.rater_id = p_rater AND l.campaign_id = p_campaign AND NOT l.released)
      INTO m_status, m_reason, c_status, c_lease_seconds, c_max_overlap, held
      FROM annotation_campaignmembership m
      JOIN annotation_campaign c ON c.id = m.campaign_id
     WHERE m.campaign_id = p_campaign AND m.rater_id = p_rater
       FOR NO KEY UPDATE OF m;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', 'not_member');
    END IF;
    result := jsonb_build_object(
        'membership', m_status, 'paused_reason', m_reason, 'campaign_status', c_status,
        'refused', NULL, 'judgment_id', NULL, 'created_at', NULL);

    IF p_item IS NOT NULL THEN
        IF c_status = 'closed' OR c_status = 'draft' OR m_status <> 'active' THEN
            RETURN result || jsonb_build_object('refused', 'no_lease');
        END IF;
        DELETE FROM annotation_lease
         WHERE item_id = p_item AND rater_id = p_rater AND campaign_id = p_campaign
        RETURNING released INTO l_released;
        IF NOT FOUND THEN
            RETURN result || jsonb_build_object('refused', 'no_lease');
        END IF;
        -- A live lease holds a slot; a released one (expired and swept) needs a free slot,
        -- unless this is a skip. Gold items have no slots.
        UPDATE annotation_item
           SET judgment_count = judgment_count + (CASE WHEN p_skipped THEN 0 ELSE 1 END),
               leased_count = leased_count - (CASE WHEN is_gold OR l_released THEN 0 ELSE 1 END)
         WHERE id = p_item
           AND (is_gold OR p_skipped OR NOT l_released
                OR judgment_count + leased_count < overlap_target);
        IF NOT FOUND THEN
            -- Undoes the lease delete with the rest of the call.
            RAISE EXCEPTION USING ERRCODE = 'SL409', MESSAGE = 'item ' || p_item || ' is full';
        END IF;
        -- A unique violation here ((item, rater) or (client id, rater)) aborts the whole call;
        -- the caller then looks for the stored judgment of a retried submit.
        INSERT INTO annotation_judgment (item_id, rater_id, campaign_id, answers, seconds_on_item,
                                         client_id, skipped, skip_reason, excluded, created_at)
        VALUES (p_item, p_rater, p_campaign, p_answers, p_seconds, p_client_id, p_skipped,
                p_skip_reason, false, ts)
        RETURNING id, created_at INTO j_id, j_created;
        result := result || jsonb_build_object('judgment_id', j_id, 'created_at', j_created);
        IF NOT l_released THEN
            held := held - 1;
        END IF;
    END IF;

    need := least(p_fetch, p_max_held - held);
    IF need > 0 AND m_status = 'active' AND c_status = 'running' THEN
        FOR g IN 1 .. least(p_gold_slots, need) LOOP
            SELECT i.id INTO gold_id FROM annotation_item i
             WHERE i.campaign_id = p_campaign AND i.is_gold
               AND NOT EXISTS (SELECT 1 FROM annotation_lease l
                                WHERE l.item_id = i.id AND l.rater_id = p_rater OFFSET 0)
               AND NOT EXISTS (SELECT 1 FROM annotation_judgment j
                                WHERE j.item_id = i.id AND j.rater_id = p_rater OFFSET 0)
             ORDER BY i.id LIMIT 1;
            EXIT WHEN gold_id IS NULL;
            INSERT INTO annotation_lease (item_id, rater_id, campaign_id, expires_at, released,
                                          created_at)
            VALUES (gold_id, p_rater, p_campaign, ts + make_interval(secs => c_lease_seconds),
                    false, ts);
            leased := leased || gold_id;
            need := need - 1;
            gold_id := NULL;
        END LOOP;
        lvl := c_max_overlap - 1;
        WHILE need > 0 AND lvl >= -1 LOOP
            IF lvl >= 0 THEN
                SELECT array_agg(x.id) INTO got FROM (
                    SELECT i.id FROM (
                        SELECT id, created_at FROM annotation_item
                         WHERE campaign_id = p_campaign AND is_open AND judgment_count = lvl
                         ORDER BY judgment_count DESC, created_at, id
                         LIMIT p_window) w
                    JOIN annotation_item i ON i.id = w.id
                    WHERE i.is_open
                      AND NOT EXISTS (SELECT 1 FROM annotation_lease l
                                       WHERE l.item_id = w.id AND l.rater_id = p_rater OFFSET 0)
                      AND NOT EXISTS (SELECT 1 FROM annotation_judgment j
                                       WHERE j.item_id = w.id AND j.rater_id = p_rater OFFSET 0)
                    ORDER BY w.created_at, w.id
                    LIMIT need
                    FOR NO KEY UPDATE OF i SKIP LOCKED) x;
            ELSE
                -- Every window was full of this rater's items (or locked): the plain scan.
                SELECT array_agg(x.id) INTO got FROM (
                    SELECT i.id FROM annotation_item i
                     WHERE i.campaign_id = p_campaign AND i.is_open
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l
                                        WHERE l.item_id = i.id AND l.rater_id = p_rater OFFSET 0)
                       AND NOT EXISTS (SELECT 1 FROM annotation_judgment j
                                        WHERE j.item_id = i.id AND j.rater_id = p_rater OFFSET 0)
                     ORDER BY i.judgment_count DESC, i.created_at, i.id
                     LIMIT need
                     FOR NO KEY UPDATE OF i SKIP LOCKED) x;
            END IF;
            IF got IS NOT NULL THEN
                WITH granted AS (
                    INSERT INTO annotation_lease (item_id, rater_id, campaign_id, expires_at,
                                                  released, created_at)
                    SELECT unnest(got), p_rater, p_campaign,
                           ts + make_interval(secs => c_lease_seconds), false, ts
                    RETURNING item_id)
                UPDATE annotation_item SET leased_count = leased_count + 1
                 WHERE id IN (SELECT item_id FROM granted);
                leased := leased || got;
                need := need - cardinality(got);
                got := NULL;
            END IF;
            lvl := lvl - 1;
        END LOOP;
    END IF;

    RETURN result || jsonb_build_object(
        'items', to_jsonb(leased),
        'rows', COALESCE((
            SELECT jsonb_agg(jsonb_build_array(
                       ic.item_id, ic.position, ic.side, c.id, c.kind, c.file, c.width, c.height,
                       c.frame_count, c.raw_prompt, c.enhanced_prompt, c.motion_prompt, c.params,
                       c.frames_prefix,
                       (SELECT s.file FROM generation_candidate s WHERE s.id = c.source_id))
                   ORDER BY ic.item_id, ic.position)
              FROM annotation_itemcandidate ic
              -- Per-row primary-key lookups: a generic plan would hash the whole table.
              CROSS JOIN LATERAL (SELECT * FROM generation_candidate c0
                                   WHERE c0.id = ic.candidate_id OFFSET 0) c
             WHERE ic.item_id = ANY(leased)), '[]'::jsonb));
END
$fn$;
"""


def install_rate_step(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RATE_STEP_FUNCTION)


def restore_previous_rate_step(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("annotation.migrations.0002_rate_step_function")
        schema_editor.execute(previous.RATE_STEP_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0003_campaign_rater_prompt")]

    operations = [migrations.RunPython(install_rate_step, restore_previous_rate_step)]
