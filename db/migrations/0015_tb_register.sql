-- TB treatment register (issue 11): the case, its daily doses, sputum results, regimen changes, the
-- clinician's outcome override, and the metadata of video-observed dose clips. The rules that read these
-- rows are care/tb.py; the cohort report's SQL is db/tb.py, held equal to care/tb.py by a property test.

CREATE TABLE tb_case (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id                 bigint NOT NULL REFERENCES patient (id),
    facility_id                bigint NOT NULL REFERENCES facility (id),
    register_ref               text CHECK (length(register_ref) BETWEEN 1 AND 64),
    registered_on              date NOT NULL,
    diagnosed_on               date,
    site                       text NOT NULL DEFAULT 'pulmonary' CHECK (site IN ('pulmonary', 'extrapulmonary')),
    registration_type          text NOT NULL DEFAULT 'new' CHECK (registration_type IN (
                                   'new', 'relapse', 'after_failure', 'after_loss_to_follow_up',
                                   'other_previously_treated', 'transferred_in')),
    bacteriologically_confirmed boolean NOT NULL,
    -- The regimen's code and total months (care.tb.REGIMENS is the data; the months are copied so the
    -- report's SQL computes the planned end without knowing the regimens).
    regimen                    text NOT NULL,
    regimen_months             int NOT NULL CHECK (regimen_months BETWEEN 1 AND 36),
    started_on                 date CHECK (started_on >= registered_on - 365),
    died_on                    date,
    transferred_out_on         date,
    outcome_override           text CHECK (outcome_override IN (
                                   'cured', 'completed', 'failed', 'died', 'lost_to_follow_up', 'not_evaluated',
                                   'still_on_treatment')),
    outcome_override_reason    text CHECK (length(outcome_override_reason) <= 500),
    created_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome_override IS NULL) = (outcome_override_reason IS NULL))
);
CREATE INDEX tb_case_facility_registered ON tb_case (facility_id, registered_on);
CREATE INDEX tb_case_patient ON tb_case (patient_id);
-- The paper register's own number is unique within the facility (the import matches on it).
CREATE UNIQUE INDEX tb_case_register_ref ON tb_case (facility_id, register_ref) WHERE register_ref IS NOT NULL;

-- One row per treatment day. A video clip makes the day 'video_pending'; its review makes it 'video' or
-- 'missed' (a rejected clip), the clip row keeping the reason.
CREATE TABLE tb_dose (
    case_id     bigint NOT NULL REFERENCES tb_case (id),
    taken_on    date NOT NULL,
    status      text NOT NULL CHECK (status IN ('in_person', 'video', 'video_pending', 'self_reported', 'missed')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, taken_on)
);

CREATE TABLE tb_sputum (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES tb_case (id),
    taken_on    date NOT NULL,
    positive    boolean NOT NULL,
    method      text NOT NULL DEFAULT 'smear' CHECK (method IN ('smear', 'culture', 'xpert')),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tb_sputum_case ON tb_sputum (case_id, taken_on);

-- Regimen changes, with their reason; a change for failure makes the outcome "treatment failed" (WHO 2021).
CREATE TABLE tb_regimen_change (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       bigint NOT NULL REFERENCES tb_case (id),
    changed_on    date NOT NULL,
    from_regimen  text NOT NULL,
    to_regimen    text NOT NULL,
    for_failure   boolean NOT NULL,
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    staff_id      bigint REFERENCES staff (id),
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tb_regimen_change_case ON tb_regimen_change (case_id);

-- A video-observed dose clip: where its bytes are (relative to the data dir), what decoding found, and
-- its review. One clip per day is the one reviewed (`current`); a second clip for the day is kept but not
-- current unless it replaces the first. `deleted_at` set by retention (the file is gone, the row stays).
CREATE TABLE tb_clip (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id        bigint NOT NULL REFERENCES tb_case (id),
    dose_on        date NOT NULL,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    path           text NOT NULL,
    sheet_path     text NOT NULL,
    bytes          bigint NOT NULL CHECK (bytes > 0),
    duration_s     real NOT NULL CHECK (duration_s > 0),
    width          int NOT NULL,
    height         int NOT NULL,
    current        boolean NOT NULL DEFAULT true,
    review         text NOT NULL DEFAULT 'pending' CHECK (review IN ('pending', 'confirmed', 'rejected')),
    review_reason  text CHECK (length(review_reason) <= 500),
    reviewed_by    bigint REFERENCES staff (id),
    reviewed_at    timestamptz,
    received_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX tb_clip_current ON tb_clip (case_id, dose_on) WHERE current;
CREATE INDEX tb_clip_pending ON tb_clip (case_id) WHERE review = 'pending' AND deleted_at IS NULL;
CREATE INDEX tb_clip_retention ON tb_clip (reviewed_at) WHERE deleted_at IS NULL AND reviewed_at IS NOT NULL;

-- A resumable clip upload: the bytes so far are the file uploads/<id>.part under the data dir (its size is
-- the offset), so an upload survives a dropped connection and a server restart. `clip_id` once stored.
CREATE TABLE tb_upload (
    id          uuid PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES tb_case (id),
    dose_on     date NOT NULL,
    size        bigint NOT NULL CHECK (size > 0),
    replace     boolean NOT NULL DEFAULT false,
    clip_id     bigint REFERENCES tb_clip (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
