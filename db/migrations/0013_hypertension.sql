-- Hypertension register (issue 10): enrolment, protocol drugs as data, medicines over time, blood pressure
-- readings from every source, visits without BP, overdue call results. The monthly indicators are computed
-- from these rows at query time (db/hypertension.py), so a reading entered now, even dated months ago,
-- shows at once and changes exactly the months it should; there is no batch and no stored aggregate.

-- The protocol's drugs (HEARTS protocols: CCB, ARB, thiazide-like diuretic, ACE inhibitor). Data: a
-- province adds a line, no release needed.
CREATE TABLE htn_drug (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{2,40}$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    drug_class    text NOT NULL CHECK (length(drug_class) BETWEEN 1 AND 60),
    default_dose  text NOT NULL DEFAULT '' CHECK (length(default_dose) <= 40),
    active        boolean NOT NULL DEFAULT true
);
INSERT INTO htn_drug (code, name, drug_class, default_dose) VALUES
    ('amlodipine', 'Amlodipine', 'CCB', '5 mg'),
    ('losartan', 'Losartan', 'ARB', '50 mg'),
    ('telmisartan', 'Telmisartan', 'ARB', '40 mg'),
    ('hydrochlorothiazide', 'Hydrochlorothiazide', 'diuretic', '12.5 mg'),
    ('indapamide', 'Indapamide', 'diuretic', '1.5 mg'),
    ('chlorthalidone', 'Chlorthalidone', 'diuretic', '12.5 mg'),
    ('enalapril', 'Enalapril', 'ACE inhibitor', '5 mg'),
    ('lisinopril', 'Lisinopril', 'ACE inhibitor', '10 mg'),
    ('perindopril', 'Perindopril', 'ACE inhibitor', '5 mg'),
    ('bisoprolol', 'Bisoprolol', 'beta blocker', '5 mg');

-- One row per patient in the register. facility_id: the station whose register the patient is on (the
-- dashboards count by it); patient_ref: the paper register's own number, unique within the facility.
CREATE TABLE htn_enrolment (
    patient_id     bigint PRIMARY KEY REFERENCES patient (id),
    facility_id    bigint NOT NULL REFERENCES facility (id),
    patient_ref    text CHECK (patient_ref IS NULL OR length(patient_ref) BETWEEN 1 AND 40),
    registered_on  date NOT NULL,
    diagnosed_on   date,
    risk_factors   text[] NOT NULL DEFAULT '{}'
                   CHECK (risk_factors <@ ARRAY['diabetes', 'cvd', 'ckd', 'smoking']),
    next_visit_on  date,
    died_on        date,
    -- Removed from the overdue list by a call result (moved, transferred, refused, wrong number); a visit
    -- after removed_on brings the patient back.
    removed_on     date,
    removed_reason text CHECK (removed_reason IN ('moved', 'transferred', 'refused', 'wrong_number')),
    enrolled_by    bigint REFERENCES staff (id),
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (facility_id, patient_ref)
);
CREATE INDEX htn_enrolment_facility ON htn_enrolment (facility_id, registered_on);
CREATE INDEX htn_enrolment_next_visit ON htn_enrolment (facility_id, next_visit_on) WHERE died_on IS NULL;

-- Medicines over time: a line is current while stopped_on is NULL; a change stops one line and starts
-- another (audited "htn.medicines"), so the chart can draw what was taken when.
CREATE TABLE htn_medicine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES htn_enrolment (patient_id),
    drug_code   text NOT NULL REFERENCES htn_drug (code),
    dose        text NOT NULL CHECK (length(dose) BETWEEN 1 AND 40),
    frequency   text NOT NULL CHECK (length(frequency) BETWEEN 1 AND 40),
    started_on  date NOT NULL,
    stopped_on  date CHECK (stopped_on IS NULL OR stopped_on >= started_on),
    changed_by  bigint REFERENCES staff (id),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX htn_medicine_patient ON htn_medicine (patient_id, started_on);

-- Blood pressure from every source. Bounds: CLINICAL.md (DHIS2 package), systolic above diastolic.
-- note: the vitals of a signed consult note (one reading per consultation, the latest version's; filled
--       by the trigger below, so nobody types it twice); station: a nurse's visit; home: the patient's own
--       cuff through their link (idempotency_key: a resend after a drop is stored once); import: a paper
--       register.
CREATE TABLE bp_reading (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id       bigint NOT NULL REFERENCES patient (id),
    taken_on         date NOT NULL,
    systolic         smallint NOT NULL CHECK (systolic BETWEEN 60 AND 260),
    diastolic        smallint NOT NULL CHECK (diastolic BETWEEN 40 AND 260),
    source           text NOT NULL CHECK (source IN ('note', 'station', 'home', 'import')),
    entered_by       bigint REFERENCES staff (id),
    consultation_id  uuid REFERENCES consultation (id),
    idempotency_key  text CHECK (idempotency_key IS NULL OR idempotency_key ~ '^[A-Za-z0-9_-]{8,64}$'),
    entered_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (systolic > diastolic),
    CHECK ((source = 'note') = (consultation_id IS NOT NULL)),
    CHECK (source <> 'home' OR idempotency_key IS NOT NULL),
    UNIQUE (patient_id, idempotency_key),
    UNIQUE (consultation_id)
);
-- The latest reading as of a date, per patient: a backward index scan.
CREATE INDEX bp_reading_patient ON bp_reading (patient_id, taken_on DESC, id DESC) INCLUDE (systolic, diastolic);

-- One visit day's reading, as the worklist query returns the two latest.
CREATE TYPE htn_day_reading AS (taken_on date, systolic smallint, diastolic smallint, id bigint);

-- Visits without a BP: a station visit where BP was not taken, a prescription changed or refilled, an
-- appointment booked. (A BP reading is itself a visit and is not repeated here.)
CREATE TABLE htn_visit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES htn_enrolment (patient_id),
    visited_on  date NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('station', 'prescription', 'appointment')),
    entered_by  bigint REFERENCES staff (id),
    entered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX htn_visit_patient ON htn_visit (patient_id, visited_on DESC);

-- Overdue list: the call results a station records (Simple's workflow).
CREATE TABLE htn_call (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES htn_enrolment (patient_id),
    called_on   date NOT NULL,
    result      text NOT NULL CHECK (result IN ('agreed', 'remind_later', 'died', 'moved', 'transferred',
                                                'refused', 'wrong_number', 'sms')),
    remind_on   date,
    staff_id    bigint REFERENCES staff (id),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX htn_call_patient ON htn_call (patient_id, at DESC);

-- A signed note's BP becomes the consultation's reading (the latest version wins): no double entry.
-- Values outside the register's bounds (the note's own plausibility ranges are wider) are left out.
CREATE FUNCTION bp_reading_from_note() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s int := (NEW.vitals ->> 'systolic')::numeric::int;
    d int := (NEW.vitals ->> 'diastolic')::numeric::int;
    c consultation%ROWTYPE;
BEGIN
    SELECT * INTO c FROM consultation WHERE id = NEW.consultation_id;
    IF s IS NULL OR d IS NULL OR s NOT BETWEEN 60 AND 260 OR d NOT BETWEEN 40 AND 260 OR s <= d THEN
        DELETE FROM bp_reading WHERE consultation_id = NEW.consultation_id;
        RETURN NEW;
    END IF;
    INSERT INTO bp_reading (patient_id, taken_on, systolic, diastolic, source, entered_by, consultation_id)
    VALUES (c.patient_id, (c.started_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date, s, d, 'note', NEW.author_id,
            NEW.consultation_id)
    ON CONFLICT (consultation_id) DO UPDATE
        SET systolic = EXCLUDED.systolic, diastolic = EXCLUDED.diastolic, entered_by = EXCLUDED.entered_by,
            entered_at = now();
    RETURN NEW;
END $$;

CREATE TRIGGER note_version_bp_reading AFTER INSERT ON note_version
    FOR EACH ROW EXECUTE FUNCTION bp_reading_from_note();

-- The overdue list's SMS reminder goes through the outbox like every other message. A check is extended,
-- never replaced: the kinds other migrations allow are read from the catalog and kept (as in 0010).
CREATE OR REPLACE FUNCTION pg_temp.extend_text_check(tbl regclass, col text, extra text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    con record;
    allowed text[] := extra;
BEGIN
    -- PostgreSQL prints a check as `= ANY (ARRAY['a'::text, …])` when written with IN (…), and as
    -- `= ANY ('{a,…}'::text[])` when written with an array (as this function writes it): read both.
    FOR con IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
               WHERE c.conrelid = tbl AND c.contype = 'c' AND pg_get_constraintdef(c.oid) ~ ('\m' || col || '\M')
                 AND pg_get_constraintdef(c.oid) ~ 'ANY \((ARRAY\[|''\{)'
    LOOP
        allowed := allowed || ARRAY(SELECT m[1] FROM regexp_matches(con.def, '''([^''{}]+)''::text', 'g') AS m);
        allowed := allowed || coalesce((SELECT string_to_array(m[1], ',')
                                        FROM regexp_matches(con.def, '''\{([^}]*)\}''::text\[\]') AS m), '{}');
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, con.conname);
    END LOOP;
    allowed := ARRAY(SELECT DISTINCT unnest(allowed) ORDER BY 1);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I = ANY (%L::text[]))',
                   tbl, tbl::text || '_' || col || '_check', col, allowed);
END $$;

SELECT pg_temp.extend_text_check('outbound_message', 'kind', ARRAY['htn_reminder']);

-- Each patient's latest reading and latest visit without BP, kept on the enrolment row by triggers (from the
-- rows, so a late reading dated earlier changes nothing here, and an edit or delete is followed). A month
-- at or after a patient's latest event (the current month, for nearly everyone) reads these columns
-- instead of probing the readings: the province dashboard is one pass over the enrolments.
ALTER TABLE htn_enrolment
    ADD COLUMN last_bp_on date,
    ADD COLUMN last_systolic smallint,
    ADD COLUMN last_diastolic smallint,
    ADD COLUMN last_visit_on date,
    -- The latest reading of the day before (the worklist's "two consecutive visits") and the number of
    -- current medicine lines (its "3 drugs or more").
    ADD COLUMN prev_bp_on date,
    ADD COLUMN prev_systolic smallint,
    ADD COLUMN prev_diastolic smallint,
    ADD COLUMN drugs int NOT NULL DEFAULT 0;

CREATE FUNCTION htn_latest(p bigint) RETURNS TABLE (bp_on date, systolic smallint, diastolic smallint,
                                                    visit_on date, prev_on date, prev_systolic smallint,
                                                    prev_diastolic smallint, drugs int)
LANGUAGE sql STABLE AS $$
    SELECT b.taken_on, b.systolic, b.diastolic,
           (SELECT max(v.visited_on) FROM htn_visit v WHERE v.patient_id = p),
           d.taken_on, d.systolic, d.diastolic,
           (SELECT count(*)::int FROM htn_medicine m WHERE m.patient_id = p AND m.stopped_on IS NULL)
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT taken_on, systolic, diastolic FROM bp_reading WHERE patient_id = p
                       ORDER BY taken_on DESC, id DESC LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT taken_on, systolic, diastolic FROM bp_reading WHERE patient_id = p
                       AND taken_on < b.taken_on ORDER BY taken_on DESC, id DESC LIMIT 1) d ON true
$$;

CREATE FUNCTION htn_refresh_latest() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.patient_id ELSE NEW.patient_id END;
BEGIN
    -- Lock first; the next statement then reads with a fresh snapshot, so two readings of the same patient
    -- committed at once cannot leave the older one on the row.
    PERFORM 1 FROM htn_enrolment WHERE patient_id = p FOR UPDATE;
    UPDATE htn_enrolment e SET (last_bp_on, last_systolic, last_diastolic, last_visit_on, prev_bp_on,
                                prev_systolic, prev_diastolic, drugs) =
        (SELECT l.bp_on, l.systolic, l.diastolic, l.visit_on, l.prev_on, l.prev_systolic, l.prev_diastolic,
                l.drugs FROM htn_latest(p) l)
    WHERE e.patient_id = p;
    RETURN NULL;
END $$;

CREATE TRIGGER bp_reading_latest AFTER INSERT OR UPDATE OR DELETE ON bp_reading
    FOR EACH ROW EXECUTE FUNCTION htn_refresh_latest();
CREATE TRIGGER htn_visit_latest AFTER INSERT OR UPDATE OR DELETE ON htn_visit
    FOR EACH ROW EXECUTE FUNCTION htn_refresh_latest();
CREATE TRIGGER htn_medicine_latest AFTER INSERT OR UPDATE OR DELETE ON htn_medicine
    FOR EACH ROW EXECUTE FUNCTION htn_refresh_latest();

-- A patient enrolled with readings already on record (from signed notes) starts with them.
CREATE FUNCTION htn_enrolment_fill_latest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT l.bp_on, l.systolic, l.diastolic, l.visit_on, l.prev_on, l.prev_systolic, l.prev_diastolic, l.drugs
      INTO NEW.last_bp_on, NEW.last_systolic, NEW.last_diastolic, NEW.last_visit_on, NEW.prev_bp_on,
           NEW.prev_systolic, NEW.prev_diastolic, NEW.drugs
      FROM htn_latest(NEW.patient_id) l;
    RETURN NEW;
END $$;

CREATE TRIGGER htn_enrolment_fill_latest BEFORE INSERT ON htn_enrolment
    FOR EACH ROW EXECUTE FUNCTION htn_enrolment_fill_latest();
