-- Foundation: facilities, staff, patients, join links, consent, the waiting queue,
-- consultations, chat, versioned consult notes and the hash-chained audit trail.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- The referral hierarchy is data (commune → regional/district → province → central).
CREATE TABLE facility (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    level         text NOT NULL CHECK (level IN ('commune', 'district', 'province', 'central')),
    parent_id     bigint REFERENCES facility (id),
    province_code text,
    commune_code  text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE staff (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facility_id   bigint NOT NULL REFERENCES facility (id),
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9._-]{2,64}$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('doctor', 'specialist', 'nurse', 'coordinator', 'admin')),
    specialties   text[] NOT NULL DEFAULT '{}',
    password_hash text NOT NULL,
    on_duty       boolean NOT NULL DEFAULT false,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of the session token is stored: a leaked table does not sign anybody in.
CREATE TABLE staff_session (
    token_hash  bytea PRIMARY KEY,
    staff_id    bigint NOT NULL REFERENCES staff (id),
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX staff_session_staff ON staff_session (staff_id);

CREATE TABLE patient (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facility_id  bigint NOT NULL REFERENCES facility (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sex          text CHECK (sex IN ('female', 'male', 'other')),
    birth_year   int CHECK (birth_year BETWEEN 1900 AND 2100),
    birth_date   date,
    phone        text,
    national_id  text,
    key_groups   text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patient_facility ON patient (facility_id);
CREATE INDEX patient_phone ON patient (phone);

-- The JWT in an SMS carries only jti, audience and expiry; everything else is here.
CREATE TABLE join_link (
    jti         uuid PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patient (id),
    purpose     text NOT NULL DEFAULT 'consult' CHECK (purpose IN ('consult')),
    created_by  bigint REFERENCES staff (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX join_link_patient ON join_link (patient_id);

CREATE TABLE consent (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id   bigint NOT NULL REFERENCES patient (id),
    link_jti     uuid REFERENCES join_link (jti),
    kind         text NOT NULL CHECK (kind IN ('teleconsultation')),
    text_version text NOT NULL,
    lang         text NOT NULL,
    given_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_link ON consent (link_jti);

CREATE TABLE queue_entry (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id    bigint NOT NULL REFERENCES patient (id),
    link_jti      uuid REFERENCES join_link (jti),
    facility_id   bigint NOT NULL REFERENCES facility (id),
    service       text NOT NULL DEFAULT 'general',
    triage_level  smallint NOT NULL CHECK (triage_level BETWEEN 0 AND 4),
    suggested_level smallint NOT NULL CHECK (suggested_level BETWEEN 0 AND 4),
    danger_signs  text[] NOT NULL DEFAULT '{}',
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    checkin       jsonb NOT NULL DEFAULT '{}',
    audio_only    boolean NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'waiting'
                  CHECK (status IN ('waiting', 'claimed', 'in_call', 'done', 'abandoned')),
    arrived_at    timestamptz NOT NULL DEFAULT now(),
    requeued_at   timestamptz,
    claimed_at    timestamptz,
    claimed_by    bigint REFERENCES staff (id),
    finished_at   timestamptz
);
-- One open entry per patient: a reload or a second tab resumes it instead of queueing twice.
CREATE UNIQUE INDEX queue_entry_one_open ON queue_entry (patient_id)
    WHERE status IN ('waiting', 'claimed', 'in_call');
CREATE INDEX queue_entry_waiting ON queue_entry (triage_level DESC, arrived_at)
    WHERE status = 'waiting';

CREATE TABLE consultation (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_entry_id uuid NOT NULL UNIQUE REFERENCES queue_entry (id),
    patient_id     bigint NOT NULL REFERENCES patient (id),
    doctor_id      bigint NOT NULL REFERENCES staff (id),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'requeued')),
    modality       text NOT NULL DEFAULT 'video' CHECK (modality IN ('video', 'audio', 'chat')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    call_started_at timestamptz,
    ended_at       timestamptz,
    ended_by       text CHECK (ended_by IN ('doctor', 'patient', 'system')),
    outcome        text,
    doctor_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consultation_patient ON consultation (patient_id, started_at DESC);
CREATE INDEX consultation_active ON consultation (status) WHERE status = 'active';

CREATE TABLE chat_message (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consultation_id uuid NOT NULL REFERENCES consultation (id),
    sender          text NOT NULL CHECK (sender IN ('patient', 'staff')),
    staff_id        bigint REFERENCES staff (id),
    client_id       text NOT NULL,
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    sent_at         timestamptz NOT NULL DEFAULT now(),
    -- A resent message (after a reconnect) is stored once.
    UNIQUE (consultation_id, sender, client_id)
);

-- Drafts autosave (one per consultation and author, overwritten: drafts are not records).
CREATE TABLE note_draft (
    consultation_id uuid NOT NULL REFERENCES consultation (id),
    author_id       bigint NOT NULL REFERENCES staff (id),
    base_version    int NOT NULL DEFAULT 0,
    content         jsonb NOT NULL,
    saved_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consultation_id, author_id)
);

-- Signed versions: append-only. The latest signed version is the record.
CREATE TABLE note_version (
    consultation_id uuid NOT NULL REFERENCES consultation (id),
    version         int NOT NULL CHECK (version >= 1),
    subjective      text NOT NULL DEFAULT '',
    objective       text NOT NULL DEFAULT '',
    assessment      text NOT NULL DEFAULT '',
    plan            text NOT NULL DEFAULT '',
    vitals          jsonb NOT NULL DEFAULT '{}',
    diagnoses       text[] NOT NULL DEFAULT '{}',
    follow_up_on    date,
    author_id       bigint NOT NULL REFERENCES staff (id),
    signed_at       timestamptz NOT NULL DEFAULT now(),
    content_sha256  text NOT NULL,
    PRIMARY KEY (consultation_id, version)
);

CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER note_version_append_only BEFORE UPDATE OR DELETE ON note_version
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Who read or changed what. Each row's hash covers the previous row's hash, so tampering shows.
CREATE TABLE audit_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_kind   text NOT NULL CHECK (actor_kind IN ('staff', 'patient', 'system')),
    actor_id     text,
    action       text NOT NULL,
    object_kind  text NOT NULL,
    object_id    text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    text NOT NULL,
    hash         text NOT NULL UNIQUE
);

CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
