-- Invited staff in a live call (issue 9 point 4): a specialist who accepted an escalation joins the
-- consultation's room as a third (or fourth) member. The row is the authorisation to join; it is kept
-- when they leave (they may come back while the consultation is active), and the audit chain records
-- who added them.
CREATE TABLE consultation_participant (
    consultation_id uuid NOT NULL REFERENCES consultation (id),
    staff_id        bigint NOT NULL REFERENCES staff (id),
    added_at        timestamptz NOT NULL DEFAULT now(),
    added_by        bigint REFERENCES staff (id),
    PRIMARY KEY (consultation_id, staff_id)
);
CREATE INDEX consultation_participant_staff ON consultation_participant (staff_id);
