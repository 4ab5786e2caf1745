-- Specialist escalation (issue 9): specialties as data, specialist shifts, the request and its offers
-- (offer windows and deadlines are rows a background loop claims with FOR UPDATE SKIP LOCKED), the
-- timeline, the question thread, the signed opinion (append-only, sha256), attachments' metadata and
-- referrals. The state machine is care/escalation.py; db/escalations.py applies it to locked rows.

-- A deployment adds rows here (INSERT) to offer another specialty; `active = false` retires one.
CREATE TABLE specialty (
    code     text PRIMARY KEY CHECK (code ~ '^[a-z][a-z_]{1,39}$'),
    name_vi  text NOT NULL CHECK (length(name_vi) BETWEEN 1 AND 100),
    name_en  text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 100),
    active   boolean NOT NULL DEFAULT true
);
INSERT INTO specialty (code, name_vi, name_en) VALUES
    ('cardiology', 'Tim mạch', 'Cardiology'),
    ('pulmonology', 'Hô hấp', 'Pulmonology'),
    ('tb', 'Lao', 'Tuberculosis'),
    ('internal_medicine', 'Nội khoa', 'Internal medicine'),
    ('obstetrics', 'Sản khoa', 'Obstetrics'),
    ('paediatrics', 'Nhi khoa', 'Paediatrics');

-- Shifts as data. A specialist is on duty when their switch (staff.on_duty) is on and, if they have any
-- shift rows at all, one of them covers the moment (no rows: the switch alone decides).
CREATE TABLE specialist_shift (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staff_id  bigint NOT NULL REFERENCES staff (id),
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL CHECK (ends_at > starts_at)
);
CREATE INDEX specialist_shift_staff ON specialist_shift (staff_id, ends_at);

CREATE TABLE escalation (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id            bigint NOT NULL REFERENCES patient (id),
    consultation_id       uuid REFERENCES consultation (id),  -- asked from a live call
    requester_id          bigint NOT NULL REFERENCES staff (id),
    requester_facility_id bigint NOT NULL REFERENCES facility (id),
    specialty             text NOT NULL REFERENCES specialty (code),
    urgency               text NOT NULL CHECK (urgency IN ('urgent', 'priority', 'routine')),
    question              text NOT NULL CHECK (length(btrim(question)) BETWEEN 1 AND 4000),
    summary               jsonb NOT NULL DEFAULT '{}',
    consent_at            timestamptz NOT NULL,  -- the patient agreed to share with the specialist
    status                text NOT NULL DEFAULT 'requested'
                          CHECK (status IN ('requested', 'offered', 'accepted', 'answered', 'closed',
                                            'overdue', 'cancelled')),
    reroute               boolean NOT NULL DEFAULT true,  -- false: one offer, then wait (the bench's baseline)
    offered_to            bigint REFERENCES staff (id),
    accepted_by           bigint REFERENCES staff (id),
    hops                  int NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL,
    deadline_at           timestamptz NOT NULL,
    deadline_for          text NOT NULL CHECK (deadline_for IN ('accept', 'answer')),
    deadline_fired_at     timestamptz,  -- set once, by whoever claimed the deadline row
    route_at              timestamptz,  -- when to look for a candidate again (nobody was on duty)
    accepted_at           timestamptz,
    answered_at           timestamptz,
    finished_at           timestamptz,
    CHECK ((status = 'offered') = (offered_to IS NOT NULL))
);
CREATE INDEX escalation_requester_facility ON escalation (requester_facility_id, created_at DESC);
CREATE INDEX escalation_patient ON escalation (patient_id, created_at DESC);
CREATE INDEX escalation_accepted_by ON escalation (accepted_by) WHERE status IN ('accepted', 'overdue');
CREATE INDEX escalation_deadline_due ON escalation (deadline_at)
    WHERE deadline_fired_at IS NULL AND status IN ('requested', 'offered', 'accepted');
CREATE INDEX escalation_route_due ON escalation (route_at) WHERE status = 'requested' AND route_at IS NOT NULL;

CREATE TABLE escalation_offer (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id uuid NOT NULL REFERENCES escalation (id),
    staff_id      bigint NOT NULL REFERENCES staff (id),
    facility_id   bigint NOT NULL REFERENCES facility (id),
    offered_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'accepted', 'declined', 'expired', 'withdrawn')),
    decided_at    timestamptz,
    reason        text CHECK (length(reason) <= 500),
    UNIQUE (escalation_id, staff_id)  -- nobody is asked twice
);
-- One open offer per request: "one specialist at a time" is a constraint, not a habit.
CREATE UNIQUE INDEX escalation_offer_one_open ON escalation_offer (escalation_id) WHERE status = 'open';
CREATE INDEX escalation_offer_due ON escalation_offer (expires_at) WHERE status = 'open';
CREATE INDEX escalation_offer_staff ON escalation_offer (staff_id) WHERE status = 'open';

-- The timeline the requester sees live: every hop, decline, expiry, question, answer.
CREATE TABLE escalation_event (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id uuid NOT NULL REFERENCES escalation (id),
    at            timestamptz NOT NULL,
    kind          text NOT NULL,
    actor_id      bigint REFERENCES staff (id),   -- NULL: the system (routing, deadlines)
    staff_id      bigint REFERENCES staff (id),   -- whom it concerns (the specialist offered, declining…)
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX escalation_event_escalation ON escalation_event (escalation_id, id);

CREATE TABLE escalation_message (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id uuid NOT NULL REFERENCES escalation (id),
    author_id     bigint NOT NULL REFERENCES staff (id),
    body          text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 2000),
    at            timestamptz NOT NULL
);
CREATE INDEX escalation_message_escalation ON escalation_message (escalation_id, id);

-- The written opinion, signed like a note version: append-only, hashed.
CREATE TABLE escalation_opinion (
    escalation_id     uuid NOT NULL REFERENCES escalation (id),
    version           int NOT NULL CHECK (version >= 1),
    author_id         bigint NOT NULL REFERENCES staff (id),
    assessment        text NOT NULL CHECK (length(btrim(assessment)) BETWEEN 1 AND 4000),
    recommendation    text NOT NULL CHECK (length(btrim(recommendation)) BETWEEN 1 AND 4000),
    transfer          boolean NOT NULL,
    transfer_facility_id bigint REFERENCES facility (id),
    transfer_urgency  text CHECK (transfer_urgency IN ('emergency', 'soon', 'planned')),
    follow_up         text NOT NULL DEFAULT '' CHECK (length(follow_up) <= 2000),
    avoided_visit     boolean NOT NULL,  -- Champlain's measure: this opinion spared a specialist visit
    signed_at         timestamptz NOT NULL,
    content_sha256    text NOT NULL,
    PRIMARY KEY (escalation_id, version)
);
CREATE TRIGGER escalation_opinion_append_only BEFORE UPDATE OR DELETE ON escalation_opinion
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Attachments: the bytes are files under the data directory (named by id), never served statically.
CREATE TABLE escalation_attachment (
    id            uuid PRIMARY KEY,
    escalation_id uuid NOT NULL REFERENCES escalation (id),
    uploaded_by   bigint NOT NULL REFERENCES staff (id),
    kind          text NOT NULL CHECK (kind IN ('jpeg', 'png', 'webp', 'pdf')),
    size_bytes    int NOT NULL CHECK (size_bytes BETWEEN 1 AND 10485760),
    sha256        text NOT NULL,
    file_name     text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 200),
    enhanced_of   uuid REFERENCES escalation_attachment (id),  -- an enhanced copy points at its original
    created_at    timestamptz NOT NULL
);
CREATE INDEX escalation_attachment_escalation ON escalation_attachment (escalation_id, created_at);

CREATE TABLE referral (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    escalation_id    uuid NOT NULL REFERENCES escalation (id),
    patient_id       bigint NOT NULL REFERENCES patient (id),
    from_facility_id bigint NOT NULL REFERENCES facility (id),
    to_facility_id   bigint NOT NULL REFERENCES facility (id),
    reason           text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    urgency          text NOT NULL CHECK (urgency IN ('emergency', 'soon', 'planned')),
    created_by       bigint NOT NULL REFERENCES staff (id),
    created_at       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'acknowledged', 'arrived', 'cancelled')),
    acknowledged_at  timestamptz,
    acknowledged_by  bigint REFERENCES staff (id),
    arrived_at       timestamptz,
    arrived_by       bigint REFERENCES staff (id)
);
CREATE UNIQUE INDEX referral_one_per_escalation ON referral (escalation_id) WHERE status <> 'cancelled';
CREATE INDEX referral_incoming ON referral (to_facility_id, created_at DESC);
