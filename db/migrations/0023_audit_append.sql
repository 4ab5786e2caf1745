-- One audit append in one round trip (db/audit.py). Every audited write takes the chain's lock and holds it
-- until its transaction commits, so every round trip made under it delays every claim, end and sign-in at
-- once. The lock, the chain's head, the hash and the row were three round trips with Python between them;
-- now the caller sends the event's canonical JSON without its first two members (the previous hash and the
-- time, known only under the lock) and this function finishes it exactly as `audit._digest` does
-- (`json.dumps([prev, at.isoformat(), ...], sort_keys=True, ensure_ascii=False, separators=(",", ":"))`:
-- a hex hash and an ISO time need no escaping), hashes it and appends the row. `audit.verify_chain`
-- recomputes every hash in Python, so the two must agree (tests/integration/test_links_audit.py).
-- A VOLATILE function takes a fresh snapshot for each statement (READ COMMITTED): the head read after the
-- lock sees the row of the append that held the lock before us.

-- A time as Python's datetime.isoformat() writes the UTC datetime asyncpg reads back: microseconds only
-- when not zero.
CREATE FUNCTION audit_time_text(at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN to_char(at AT TIME ZONE 'UTC', 'US') = '000000' THEN ''
                   ELSE '.' || to_char(at AT TIME ZONE 'UTC', 'US') END
           || '+00:00'
$$;

CREATE FUNCTION audit_append(lock_key bigint, p_actor_kind text, p_actor_id text, p_action text,
                             p_object_kind text, p_object_id text, p_details jsonb, payload_rest text)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    prev text;
    at   timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.hash INTO prev FROM audit_event e ORDER BY e.id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    at := clock_timestamp();
    INSERT INTO audit_event (at, actor_kind, actor_id, action, object_kind, object_id, details, prev_hash, hash)
    VALUES (at, p_actor_kind, p_actor_id, p_action, p_object_kind, p_object_id, p_details, prev,
            encode(sha256(convert_to('["' || prev || '","' || audit_time_text(at) || '",' || payload_rest, 'UTF8')),
                   'hex'));
END
$$;
