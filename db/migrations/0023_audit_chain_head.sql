-- The audit chain's head, taken under the append lock in one round trip (db/audit.py). Every audited write
-- serialises on that lock until its transaction commits, so each round trip held under it limits every
-- claim, end and sign-in at once. A VOLATILE function takes a fresh snapshot for each statement inside it
-- (READ COMMITTED), so the SELECT after the lock sees the row of the append that held the lock before us,
-- as the two separate statements did.
CREATE FUNCTION audit_chain_head(lock_key bigint, OUT prev text, OUT at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.hash INTO prev FROM audit_event e ORDER BY e.id DESC LIMIT 1;
    at := clock_timestamp();
END
$$;
