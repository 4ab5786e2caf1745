-- Group commit of claims and ends (signaling/batch.py, docs/decisions.md "Group commit"): the hub hands a
-- batch of claims to one statement and appends all their audit events with one lock.
--
-- Every statement in these functions is a lookup by key or an index walk; `enable_seqscan = off` keeps them so
-- when the planner's statistics are stale. A fresh or quiet database (a new station, a test, a benchmark)
-- has its consultations and audit rows counted as empty until autovacuum analyses them, and the plans these
-- functions cache then scan the whole table for a doctor's active consultation or the chain's head: 0.3 ms
-- and 2.5 ms per call at 4,000 and 8,000 rows, growing with the table.

-- The claim's pick, index-driven: per facility, the waiting entries whose page is open, in claim order
-- (db/queue.py ORDER). The pick walks it per facility of the doctor's scope instead of scanning and sorting
-- every waiting entry of the scope (a semi-join on facility_subtree, which no index serves in order).
CREATE INDEX queue_entry_claim_order ON queue_entry
    (facility_id, triage_level DESC, (requeued_at IS NULL), (coalesce(rejoined_at, arrived_at)), id)
    WHERE status = 'waiting' AND left_at IS NULL;

-- Several audit events in one statement, under one take of the chain's lock: chained in the order given,
-- each hashed exactly as `audit_append` (migration 0023) and `audit._digest` do, each with its own time.
-- `payload_rests[i]` is event i's canonical JSON without its first two members (db/audit.py); `p_details[i]`
-- its details as JSON text.
CREATE FUNCTION audit_append_many(lock_key bigint, p_actor_kinds text[], p_actor_ids text[], p_actions text[],
                                  p_object_kinds text[], p_object_ids text[], p_details text[],
                                  payload_rests text[])
RETURNS void LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    prev text;
    at   timestamptz;
    h    text;
BEGIN
    IF coalesce(cardinality(p_actions), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.hash INTO prev FROM audit_event e ORDER BY e.id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    FOR i IN 1 .. cardinality(p_actions) LOOP
        at := clock_timestamp();
        h := encode(sha256(convert_to('["' || prev || '","' || audit_time_text(at) || '",' || payload_rests[i],
                                      'UTF8')), 'hex');
        INSERT INTO audit_event (at, actor_kind, actor_id, action, object_kind, object_id, details, prev_hash, hash)
        VALUES (at, p_actor_kinds[i], p_actor_ids[i], p_actions[i], p_object_kinds[i], p_object_ids[i],
                p_details[i]::jsonb, prev, h);
        prev := h;
    END LOOP;
END
$$;

-- Every claim of a batch, in order, and their audit events, in one statement (called outside a transaction it
-- is its own: one round trip, and the chain's lock is held from the append to the commit only). Item i is
-- doctor p_doctors[i] of facility p_facilities[i] taking p_entries[i] (NULL: the first waiting patient of
-- their scope whose page is open). One row per item: the consultation opened and the entry claimed, or a
-- reason and nothing changed —
--   queue_empty      nobody waits in scope with their page open (next only)
--   not_found        the chosen entry does not exist in the doctor's scope
--   already_claimed  the chosen entry is not waiting (entry_status says what it is; 'waiting' when another
--                    transaction holds it right now)
--   doctor_busy      the doctor has an active consultation (one claimed earlier in this batch included)
-- The reasons are decided in the order the single-claim SQL meets them (db/queue.py): the pick first, then
-- the doctor. Each item's changes are visible to the next (same transaction), so an entry claimed by an
-- earlier item is no longer waiting; entries other transactions hold are skipped (FOR UPDATE SKIP LOCKED),
-- so claims stay exactly once across batches and processes. A doctor made busy by a concurrent transaction
-- after the check raises unique_violation: the caller then runs the batch's items one by one.
-- Each claim's `queue.claim` event is appended last, all with one `audit_append_many`: Python sends each
-- event's canonical JSON (db/audit.py) and its details with the placeholders @@entry@@ and @@consultation@@,
-- which only this statement knows (uuids: nothing to escape in JSON).
CREATE FUNCTION queue_claim_batch(p_doctors bigint[], p_facilities bigint[], p_entries uuid[],
                                  lock_key bigint, p_payloads text[], p_details text[])
RETURNS TABLE (n int, consultation_id uuid, entry_id uuid, patient_id bigint, reason text, entry_status text)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    scopes   jsonb;
    fs       bigint[];
    skipped  uuid[];
    cand     uuid;
    got      uuid;
    st       text;
    pid      bigint;
    audio    boolean;
    ev_ids   text[] := '{}';
    ev_actor text[] := '{}';
    ev_det   text[] := '{}';
    ev_rest  text[] := '{}';
BEGIN
    -- Each distinct facility's subtree once per batch.
    SELECT jsonb_object_agg(d.f::text, (SELECT jsonb_agg(s) FROM facility_subtree(d.f) s))
    INTO scopes FROM (SELECT DISTINCT unnest(p_facilities) AS f) d;
    FOR i IN 1 .. coalesce(cardinality(p_doctors), 0) LOOP
        n := i;
        consultation_id := NULL; entry_id := NULL; patient_id := NULL; reason := NULL; entry_status := NULL;
        fs := ARRAY(SELECT jsonb_array_elements_text(scopes -> p_facilities[i]::text)::bigint);
        got := NULL;
        IF p_entries[i] IS NULL THEN
            skipped := '{}';
            LOOP
                -- The first in claim order of each facility (an index scan each), then the first of those.
                SELECT c.id INTO cand
                FROM unnest(fs) AS f(id) CROSS JOIN LATERAL (
                    SELECT q.id, q.triage_level, (q.requeued_at IS NULL) AS fresh,
                           coalesce(q.rejoined_at, q.arrived_at) AS since
                    FROM queue_entry q
                    WHERE q.facility_id = f.id AND q.status = 'waiting' AND q.left_at IS NULL
                      AND q.id <> ALL (skipped)
                    ORDER BY q.triage_level DESC, (q.requeued_at IS NULL), coalesce(q.rejoined_at, q.arrived_at),
                             q.id
                    LIMIT 1) c
                ORDER BY c.triage_level DESC, c.fresh, c.since, c.id
                LIMIT 1;
                EXIT WHEN cand IS NULL;
                SELECT q.id INTO got FROM queue_entry q
                WHERE q.id = cand AND q.status = 'waiting' AND q.left_at IS NULL
                FOR UPDATE SKIP LOCKED;
                EXIT WHEN got IS NOT NULL;
                skipped := skipped || cand;  -- another transaction holds it (or just took it): the next one
            END LOOP;
            IF got IS NULL THEN
                reason := 'queue_empty';
                RETURN NEXT;
                CONTINUE;
            END IF;
        ELSE
            SELECT q.id INTO got FROM queue_entry q
            WHERE q.id = p_entries[i] AND q.status = 'waiting' AND q.facility_id = ANY (fs)
            FOR UPDATE SKIP LOCKED;
            IF got IS NULL THEN
                SELECT q.status INTO st FROM queue_entry q WHERE q.id = p_entries[i] AND q.facility_id = ANY (fs);
                IF NOT FOUND THEN
                    reason := 'not_found';
                ELSE
                    reason := 'already_claimed';
                    entry_status := st;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF EXISTS (SELECT 1 FROM consultation c WHERE c.doctor_id = p_doctors[i] AND c.status = 'active') THEN
            reason := 'doctor_busy';  -- the picked entry stays waiting (locked until the commit)
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE queue_entry q SET status = 'claimed', claimed_at = now(), claimed_by = p_doctors[i]
        WHERE q.id = got RETURNING q.patient_id, q.audio_only INTO pid, audio;
        INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, modality)
        VALUES (got, pid, p_doctors[i], CASE WHEN audio THEN 'audio' ELSE 'video' END)
        RETURNING id INTO consultation_id;
        entry_id := got;
        patient_id := pid;
        ev_ids := ev_ids || got::text;
        ev_actor := ev_actor || p_doctors[i]::text;
        ev_det := ev_det || replace(replace(p_details[i], '@@entry@@', got::text), '@@consultation@@',
                                    consultation_id::text);
        ev_rest := ev_rest || replace(replace(p_payloads[i], '@@entry@@', got::text), '@@consultation@@',
                                      consultation_id::text);
        RETURN NEXT;
    END LOOP;
    -- Last: the chain's lock is held from here to the commit.
    PERFORM audit_append_many(lock_key, array_fill('staff'::text, ARRAY[cardinality(ev_ids)]), ev_actor,
                              array_fill('queue.claim'::text, ARRAY[cardinality(ev_ids)]),
                              array_fill('queue_entry'::text, ARRAY[cardinality(ev_ids)]), ev_ids, ev_det, ev_rest);
END
$$;

-- Every end of a batch and their audit events in one statement (one round trip outside a transaction, as
-- above): each consultation ended, its queue entry done and the patient's link finished, as
-- db.consultations.end does one at a time; the ids are distinct. One row per id: ended (with the patient),
-- or the status it was found in (NULL: no such consultation). Event i (p_actor_kinds[i], p_actor_ids[i],
-- `consultation.end`, p_details[i], canonical JSON p_payloads[i]) is appended if and only if consultation i
-- ended, in order, with one `audit_append_many`.
CREATE FUNCTION consultation_end_batch(p_ids uuid[], p_by text[], lock_key bigint, p_actor_kinds text[],
                                       p_actor_ids text[], p_details text[], p_payloads text[])
RETURNS TABLE (n int, ended_patient bigint, status text)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    ns       int[];
    patients bigint[];
    statuses text[];
    ev       int[] := '{}';
BEGIN
    WITH asked AS (SELECT a.id, a.who, a.n FROM unnest(p_ids, p_by) WITH ORDINALITY AS a(id, who, n)),
    ended AS (
        UPDATE consultation c SET status = 'ended', ended_at = now(), ended_by = asked.who, outcome = NULL
        FROM asked WHERE c.id = asked.id AND c.status = 'active'
        RETURNING asked.n, c.queue_entry_id, c.patient_id),
    done AS (
        UPDATE queue_entry q SET status = 'done', finished_at = now()
        FROM ended WHERE q.id = ended.queue_entry_id RETURNING q.link_jti),
    finished AS (
        UPDATE join_link l SET finished_at = now()
        FROM done WHERE l.jti = done.link_jti AND l.finished_at IS NULL)
    SELECT array_agg(asked.n::int ORDER BY asked.n), array_agg(e.patient_id ORDER BY asked.n),
           array_agg(c.status ORDER BY asked.n)
    INTO ns, patients, statuses
    FROM asked LEFT JOIN ended e ON e.n = asked.n LEFT JOIN consultation c ON c.id = asked.id;
    FOR i IN 1 .. coalesce(cardinality(ns), 0) LOOP
        n := ns[i];
        ended_patient := patients[i];
        status := statuses[i];  -- the statement's snapshot: 'active' for those it ended
        IF ended_patient IS NOT NULL THEN
            ev := ev || n;
        END IF;
        RETURN NEXT;
    END LOOP;
    -- Last: the chain's lock is held from here to the commit.
    PERFORM audit_append_many(lock_key, ARRAY(SELECT p_actor_kinds[k] FROM unnest(ev) WITH ORDINALITY AS u(k, o) ORDER BY o),
                              ARRAY(SELECT p_actor_ids[k] FROM unnest(ev) WITH ORDINALITY AS u(k, o) ORDER BY o),
                              array_fill('consultation.end'::text, ARRAY[cardinality(ev)]),
                              array_fill('consultation'::text, ARRAY[cardinality(ev)]),
                              ARRAY(SELECT p_ids[k]::text FROM unnest(ev) WITH ORDINALITY AS u(k, o) ORDER BY o),
                              ARRAY(SELECT p_details[k] FROM unnest(ev) WITH ORDINALITY AS u(k, o) ORDER BY o),
                              ARRAY(SELECT p_payloads[k] FROM unnest(ev) WITH ORDINALITY AS u(k, o) ORDER BY o));
END
$$;
