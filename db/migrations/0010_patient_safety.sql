-- Patient safety on a consultation day: stored danger alerts (kept until a clinician acknowledges them,
-- sent to the facility's on-call clinician by SMS when nobody serving it is online), patient presence on
-- the queue entry (offline patients are skipped by "take next"), and no-shows recorded as such.

-- The station's own phone number (told to patients when no doctor is online) and who is on call for it:
-- a staff member (their phone) or a number of its own (a duty phone). The number wins when both are set.
ALTER TABLE facility ADD COLUMN IF NOT EXISTS phone text CHECK (phone IS NULL OR phone ~ '^\+[0-9]{8,15}$');
ALTER TABLE facility ADD COLUMN on_call_staff_id bigint REFERENCES staff (id);
ALTER TABLE facility ADD COLUMN on_call_phone text CHECK (on_call_phone IS NULL OR on_call_phone ~ '^\+[0-9]{8,15}$');
ALTER TABLE staff ADD COLUMN IF NOT EXISTS phone text CHECK (phone IS NULL OR phone ~ '^\+[0-9]{8,15}$');

-- Presence: left_at is when the patient's last open page went away (NULL while a page is open, and before
-- the first one opens). rejoined_at orders a patient who came back after the offline grace period: they
-- queue again from then, at their triage level. closed_reason says why an entry closed without a call.
ALTER TABLE queue_entry ADD COLUMN left_at timestamptz;
ALTER TABLE queue_entry ADD COLUMN rejoined_at timestamptz;
ALTER TABLE queue_entry ADD COLUMN closed_reason text CHECK (closed_reason IS NULL OR length(closed_reason) <= 200);

-- A status check is extended, never replaced: other migrations may have added values of their own
-- (the values already allowed are read from the catalog and kept).
CREATE FUNCTION pg_temp.extend_text_check(tbl regclass, col text, extra text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    con record;
    allowed text[] := extra;
BEGIN
    FOR con IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
               WHERE c.conrelid = tbl AND c.contype = 'c' AND pg_get_constraintdef(c.oid) ~ ('\m' || col || '\M')
                 AND pg_get_constraintdef(c.oid) ~ 'ANY \(ARRAY\['
    LOOP
        allowed := allowed || ARRAY(SELECT m[1] FROM regexp_matches(con.def, '''([^'']+)''::text', 'g') AS m);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, con.conname);
    END LOOP;
    allowed := ARRAY(SELECT DISTINCT unnest(allowed) ORDER BY 1);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I = ANY (%L::text[]))',
                   tbl, tbl::text || '_' || col || '_check', col, allowed);
END $$;

SELECT pg_temp.extend_text_check('queue_entry', 'status', ARRAY['no_show']);
SELECT pg_temp.extend_text_check('outbound_message', 'kind', ARRAY['danger_alert', 'no_show']);

-- The SMS to an on-call clinician is about a patient but goes to staff: it names the alert it carries.
ALTER TABLE outbound_message ADD COLUMN alert_id uuid;

-- Every danger sign at check-in is an alert, shown to every staff member serving the facility (also those
-- who sign in later) until one of them acknowledges it.
CREATE TABLE danger_alert (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_entry_id   uuid NOT NULL UNIQUE REFERENCES queue_entry (id),
    patient_id       bigint NOT NULL REFERENCES patient (id),
    facility_id      bigint NOT NULL REFERENCES facility (id),
    triage_level     smallint NOT NULL CHECK (triage_level BETWEEN 0 AND 4),
    danger_signs     text[] NOT NULL,
    raised_at        timestamptz NOT NULL DEFAULT now(),
    -- How many clinicians serving the facility were online when it was raised (0: the on-call SMS path).
    clinicians_online int NOT NULL CHECK (clinicians_online >= 0),
    on_call_message_id bigint REFERENCES outbound_message (id),
    acknowledged_at  timestamptz,
    acknowledged_by  bigint REFERENCES staff (id),
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE INDEX danger_alert_open ON danger_alert (facility_id, raised_at) WHERE acknowledged_at IS NULL;
