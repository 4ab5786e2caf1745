-- Per-case figures of the TB course, kept exact as doses are written (issue 11: the province's quarterly
-- report read every dose of the cohort to find each case's longest gap, 8 s for 50,000 cases). The report
-- now reads one row per case. Any write of tb_dose (the use cases, the import's COPY, a clip review, an edit,
-- a back-dated dose, a delete) recomputes the cases it touched; a change of start or regimen recomputes the
-- case. care/tb.py stays the definition; tests/integration/test_tb_report.py holds the two equal.
--
--   gap_lost_on      the first day on which GAP_LOST_DAYS (60) consecutive days without a dose taken have
--                    accrued within [started_on, planned end]; NULL if none (or not started). The pure
--                    rule's "longest gap in [start, min(as_of, planned end)] >= 60" is exactly
--                    "gap_lost_on <= as_of": a 60-day run ending by as_of uses no day after it.
--   taken_in_course  doses taken in [started_on, planned end - 1]: the overall adherence's numerator for a
--                    report judged on or after the planned end.

ALTER TABLE tb_case ADD COLUMN gap_lost_on date, ADD COLUMN taken_in_course int;

CREATE FUNCTION tb_course_figures(p_case bigint, p_start date, p_months int,
                                  OUT gap_lost_on date, OUT taken_in_course int)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pe date;
BEGIN
    IF p_start IS NULL THEN
        RETURN;
    END IF;
    pe := (p_start + make_interval(months => p_months))::date;  -- care.tb.planned_end
    WITH taken AS (
        SELECT d.taken_on, lag(d.taken_on, 1, p_start - 1) OVER (ORDER BY d.taken_on) AS prev
        FROM tb_dose d
        WHERE d.case_id = p_case AND d.taken_on BETWEEN p_start AND pe AND d.status <> 'missed'
    )
    SELECT least(min(t.prev + 60) FILTER (WHERE t.taken_on - t.prev - 1 >= 60),
                 CASE WHEN pe - coalesce(max(t.taken_on), p_start - 1) >= 60
                      THEN coalesce(max(t.taken_on), p_start - 1) + 60 END),
           count(*) FILTER (WHERE t.taken_on < pe)
      INTO gap_lost_on, taken_in_course
      FROM taken t;
END $$;

-- A new case, or its start or regimen changed: its figures from its doses.
CREATE FUNCTION tb_case_course_figures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.started_on IS DISTINCT FROM OLD.started_on
       OR NEW.regimen_months IS DISTINCT FROM OLD.regimen_months THEN
        SELECT f.gap_lost_on, f.taken_in_course INTO NEW.gap_lost_on, NEW.taken_in_course
          FROM tb_course_figures(NEW.id, NEW.started_on, NEW.regimen_months) f;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER tb_case_course_figures BEFORE INSERT OR UPDATE OF started_on, regimen_months ON tb_case
    FOR EACH ROW EXECUTE FUNCTION tb_case_course_figures();

-- Doses written: once per statement (an import's COPY of thousands of doses recomputes each case once).
-- The cases are locked first, in id order; the UPDATE that follows is a new statement, so under READ
-- COMMITTED it sees every dose committed by a writer that held the lock before us.
CREATE FUNCTION tb_dose_refresh_cases() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT case_id) INTO ids FROM new_doses;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT case_id) INTO ids FROM old_doses;
    ELSE
        SELECT array_agg(DISTINCT case_id) INTO ids
          FROM (SELECT case_id FROM new_doses UNION SELECT case_id FROM old_doses) x;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM tb_case WHERE id = ANY (ids) ORDER BY id FOR UPDATE;
    UPDATE tb_case c SET (gap_lost_on, taken_in_course) =
        (SELECT f.gap_lost_on, f.taken_in_course FROM tb_course_figures(c.id, c.started_on, c.regimen_months) f)
     WHERE c.id = ANY (ids);
    RETURN NULL;
END $$;

CREATE TRIGGER tb_dose_inserted AFTER INSERT ON tb_dose REFERENCING NEW TABLE AS new_doses
    FOR EACH STATEMENT EXECUTE FUNCTION tb_dose_refresh_cases();
CREATE TRIGGER tb_dose_updated AFTER UPDATE ON tb_dose REFERENCING OLD TABLE AS old_doses NEW TABLE AS new_doses
    FOR EACH STATEMENT EXECUTE FUNCTION tb_dose_refresh_cases();
CREATE TRIGGER tb_dose_deleted AFTER DELETE ON tb_dose REFERENCING OLD TABLE AS old_doses
    FOR EACH STATEMENT EXECUTE FUNCTION tb_dose_refresh_cases();

-- Cases already on record.
UPDATE tb_case c SET (gap_lost_on, taken_in_course) =
    (SELECT f.gap_lost_on, f.taken_in_course FROM tb_course_figures(c.id, c.started_on, c.regimen_months) f);
