-- Hypertension register (issue 10): each station's monthly indicators, cached so a province's dashboard
-- sums 2,000 stations' rows instead of classifying a million patients, for any month.
--
-- Exact by construction: a row is computed by the dashboard's own SQL for one station and one month
-- (db/hypertension.py fills missing rows when a dashboard asks), and the triggers below delete every row a
-- write can change, in the writing transaction. A month's indicators depend only on events dated on or
-- before its last day, so an event dated in month m at station s can change s's months >= m and no other:
-- a reading or visit (whenever it is entered, however late its date) deletes s's rows from its month on;
-- an enrolment (or a change of its station, date of registration, patient or death) deletes the rows of the
-- old and the new station from the month it takes effect. The tree above a station is summed at query
-- time, so moving a station under another district needs nothing here.
--
-- Races: a writer takes a shared transaction-level advisory lock on the station (class 18) before deleting;
-- a fill takes it exclusively, without waiting (pg_try_advisory_xact_lock), and computes in a statement that
-- starts after it holds it. A writer still in flight when the fill starts keeps the fill from caching that
-- station (the values are shown, not stored); a writer arriving during a fill waits for it to commit and
-- then deletes what it stored. So no stored row ever misses a committed write.
CREATE TABLE htn_station_month (
    facility_id        bigint NOT NULL REFERENCES facility (id) ON DELETE CASCADE,
    month              date NOT NULL CHECK (extract(day FROM month) = 1),
    registered         int NOT NULL,
    under_care         int NOT NULL,
    lost_to_follow_up  int NOT NULL,
    dead               int NOT NULL,
    denominator        int NOT NULL,
    controlled         int NOT NULL,
    uncontrolled       int NOT NULL,
    missed_visit       int NOT NULL,
    visited_no_bp      int NOT NULL,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (facility_id, month)
);

-- Forget the cached months of each station from the given date's month on.
CREATE FUNCTION htn_station_month_forget(stations bigint[], froms date[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(18, (s % 2147483647)::int)
    FROM (SELECT DISTINCT s FROM unnest(stations) s WHERE s IS NOT NULL ORDER BY s) d;
    -- A new statement, so a new snapshot: it sees a fill committed while the lock above was awaited.
    DELETE FROM htn_station_month m
    USING (SELECT s, min(f) AS f FROM unnest(stations, froms) u(s, f) WHERE s IS NOT NULL AND f IS NOT NULL
           GROUP BY s) u
    WHERE m.facility_id = u.s AND m.month >= date_trunc('month', u.f)::date;
END $$;

-- Readings and visits without BP: statement-level, so a register import of 10,000 rows deletes once.
CREATE FUNCTION htn_station_month_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    st bigint[];
    fr date[];
BEGIN
    IF TG_TABLE_NAME = 'bp_reading' THEN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            SELECT array_agg(e.facility_id), array_agg(n.taken_on) INTO st, fr
            FROM (SELECT patient_id, min(taken_on) AS taken_on FROM new_rows GROUP BY patient_id) n
            JOIN htn_enrolment e ON e.patient_id = n.patient_id;
            PERFORM htn_station_month_forget(st, fr);
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            SELECT array_agg(e.facility_id), array_agg(o.taken_on) INTO st, fr
            FROM (SELECT patient_id, min(taken_on) AS taken_on FROM old_rows GROUP BY patient_id) o
            JOIN htn_enrolment e ON e.patient_id = o.patient_id;
            PERFORM htn_station_month_forget(st, fr);
        END IF;
    ELSE
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            SELECT array_agg(e.facility_id), array_agg(n.visited_on) INTO st, fr
            FROM (SELECT patient_id, min(visited_on) AS visited_on FROM new_rows GROUP BY patient_id) n
            JOIN htn_enrolment e ON e.patient_id = n.patient_id;
            PERFORM htn_station_month_forget(st, fr);
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            SELECT array_agg(e.facility_id), array_agg(o.visited_on) INTO st, fr
            FROM (SELECT patient_id, min(visited_on) AS visited_on FROM old_rows GROUP BY patient_id) o
            JOIN htn_enrolment e ON e.patient_id = o.patient_id;
            PERFORM htn_station_month_forget(st, fr);
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- A trigger with transition tables handles one event; the function tells them apart by TG_OP.
CREATE TRIGGER bp_reading_station_month_insert AFTER INSERT ON bp_reading
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION htn_station_month_event();
CREATE TRIGGER bp_reading_station_month_update AFTER UPDATE ON bp_reading
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION htn_station_month_event();
CREATE TRIGGER bp_reading_station_month_delete AFTER DELETE ON bp_reading
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION htn_station_month_event();
CREATE TRIGGER htn_visit_station_month_insert AFTER INSERT ON htn_visit
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION htn_station_month_event();
CREATE TRIGGER htn_visit_station_month_update AFTER UPDATE ON htn_visit
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION htn_station_month_event();
CREATE TRIGGER htn_visit_station_month_delete AFTER DELETE ON htn_visit
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION htn_station_month_event();

-- Enrolments: a patient counts from the month of registration (their earlier readings included), so an
-- enrolment added, removed, moved to another station or patient, or re-dated forgets both stations from
-- the earlier registration month; a death recorded or corrected forgets the station from the earlier of
-- the two dates. (The triggers that keep the latest values update other columns and do not fire this.)
CREATE FUNCTION htn_station_month_enrolment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM htn_station_month_forget(ARRAY[NEW.facility_id], ARRAY[NEW.registered_on]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM htn_station_month_forget(ARRAY[OLD.facility_id], ARRAY[OLD.registered_on]);
    ELSIF (OLD.facility_id, OLD.patient_id, OLD.registered_on)
          IS DISTINCT FROM (NEW.facility_id, NEW.patient_id, NEW.registered_on) THEN
        PERFORM htn_station_month_forget(ARRAY[OLD.facility_id, NEW.facility_id],
                                         ARRAY[least(OLD.registered_on, NEW.registered_on),
                                               least(OLD.registered_on, NEW.registered_on)]);
    ELSIF OLD.died_on IS DISTINCT FROM NEW.died_on THEN
        PERFORM htn_station_month_forget(ARRAY[NEW.facility_id], ARRAY[least(OLD.died_on, NEW.died_on)]);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER htn_enrolment_station_month AFTER INSERT OR DELETE OR UPDATE OF facility_id, patient_id,
    registered_on, died_on ON htn_enrolment FOR EACH ROW EXECUTE FUNCTION htn_station_month_enrolment();
