-- Hypertension register (issue 10): the province specialist's worklist without a pass over a million rows.
--
-- The worklist reasons that do not depend on the day (care.hypertension.worklist_reasons: latest reading
-- >= 180/110, >= 3 drugs and still uncontrolled, uncontrolled at the two latest visit days) are read from
-- the enrolment row's latest and previous-day readings and drug count, which triggers keep (0013); their
-- most severe one is stored here as a generated column, so it follows every write of those columns.
-- NULL: none of them (the patient can still be overdue, which depends on the day). The worklist's fast
-- path (db/hypertension.py) applies these rules only to rows whose latest event is on or before the day
-- asked, exactly as before.
ALTER TABLE htn_enrolment ADD COLUMN severity smallint GENERATED ALWAYS AS (
    CASE WHEN last_systolic >= 180 OR last_diastolic >= 110 THEN 1
         WHEN drugs >= 3 AND NOT (last_systolic < 140 AND last_diastolic < 90) THEN 2
         WHEN NOT (last_systolic < 140 AND last_diastolic < 90)
              AND NOT (prev_systolic < 140 AND prev_diastolic < 90) THEN 3
    END) STORED;

-- The worklist's order within the severe rows: severity, highest latest systolic, patient id. A large
-- scope reads it in order and stops at the page's last row.
CREATE INDEX htn_enrolment_worklist ON htn_enrolment (severity, (coalesce(last_systolic, 0)) DESC, patient_id)
    WHERE severity IS NOT NULL;
-- Overdue patients with no other reason: the scheduled visit date has passed (the day is a parameter).
CREATE INDEX htn_enrolment_overdue_only ON htn_enrolment (next_visit_on) WHERE severity IS NULL;
-- Rows with an event dated after the day asked (rare: a clock moved back), which the worklist classifies
-- from their readings instead.
CREATE INDEX htn_enrolment_latest_event ON htn_enrolment ((greatest(last_bp_on, last_visit_on)));
