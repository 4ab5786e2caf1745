-- Invitations (walk-in now, or an appointment at a slot with a doctor or a service) and the messages
-- that carry their links: the invitation SMS, reminders, queue "about N minutes", reschedule and revoke
-- notices. Messages are rows with a due time; a scheduler driven from this table sends each once.

CREATE TABLE invitation (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id   bigint NOT NULL REFERENCES patient (id),
    facility_id  bigint NOT NULL REFERENCES facility (id),
    kind         text NOT NULL CHECK (kind IN ('walk_in', 'appointment')),
    slot_at      timestamptz,
    doctor_id    bigint REFERENCES staff (id),
    service      text CHECK (service IS NULL OR length(service) BETWEEN 1 AND 60),
    -- The language of the patient's messages, and the number they go to (E.164; NULL: no SMS, the link
    -- is handed over by QR code or copied into another messenger).
    lang         text NOT NULL DEFAULT 'vi' CHECK (lang IN ('vi', 'en')),
    phone        text CHECK (phone IS NULL OR phone ~ '^\+84[0-9]{9}$'),
    opens_at     timestamptz NOT NULL,
    closes_at    timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'rescheduled', 'used')),
    link_jti     uuid NOT NULL UNIQUE REFERENCES join_link (jti),
    created_by   bigint REFERENCES staff (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_at      timestamptz,
    revoked_at   timestamptz,
    replaced_by  uuid REFERENCES invitation (id),
    CHECK ((kind = 'appointment') = (slot_at IS NOT NULL)),
    CHECK (kind = 'walk_in' OR doctor_id IS NOT NULL OR service IS NOT NULL),
    CHECK (closes_at > opens_at)
);
-- No double booking: one active (or already used) appointment per doctor and slot, and per service of a
-- facility and slot when no doctor is named. A revoked or rescheduled one frees its slot.
CREATE UNIQUE INDEX invitation_doctor_slot ON invitation (doctor_id, slot_at)
    WHERE status IN ('active', 'used') AND doctor_id IS NOT NULL;
CREATE UNIQUE INDEX invitation_service_slot ON invitation (facility_id, service, slot_at)
    WHERE status IN ('active', 'used') AND doctor_id IS NULL AND service IS NOT NULL;
CREATE INDEX invitation_patient ON invitation (patient_id, created_at DESC);
CREATE INDEX invitation_day ON invitation (facility_id, coalesce(slot_at, created_at));

CREATE TABLE outbound_message (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invitation_id       uuid REFERENCES invitation (id),
    patient_id          bigint NOT NULL REFERENCES patient (id),
    to_phone            text NOT NULL CHECK (to_phone ~ '^\+[0-9]{8,15}$'),
    lang                text NOT NULL CHECK (lang IN ('vi', 'en')),
    kind                text NOT NULL CHECK (kind IN ('invitation', 'reminder_day_before', 'reminder_15_min',
                                                      'queue_near', 'rescheduled', 'revoked')),
    body                text NOT NULL CHECK (length(body) BETWEEN 1 AND 1000),
    -- What makes a message unique ("reminder_15_min:<invitation>", "queue_near:<entry>"): scheduling the
    -- same thing twice, from two processes or after a restart, inserts nothing.
    dedupe_key          text NOT NULL UNIQUE,
    due_at              timestamptz NOT NULL,
    -- cancelled: a pending reminder of an invitation that was revoked or rescheduled.
    status              text NOT NULL DEFAULT 'scheduled'
                        CHECK (status IN ('scheduled', 'sending', 'sent', 'failed', 'delivered', 'cancelled')),
    attempts            int NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    sending_since       timestamptz,
    last_error          text,
    gateway             text,
    provider_message_id text,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
-- The scheduler's claim: due scheduled messages, and "sending" ones a crashed process left behind.
CREATE INDEX outbound_message_due ON outbound_message (coalesce(next_attempt_at, due_at))
    WHERE status = 'scheduled';
CREATE INDEX outbound_message_sending ON outbound_message (sending_since) WHERE status = 'sending';
CREATE INDEX outbound_message_invitation ON outbound_message (invitation_id);
CREATE INDEX outbound_message_recent ON outbound_message (created_at DESC);
