-- Leaving with a plan, short links and the station's phone number.
--
-- * facility.phone: the number a patient calls (shown on expired links, in invitation SMS).
-- * short_link: a random 10+ character code (62-letter alphabet) for a join link, so an invitation SMS
--   fits one 160-character GSM-7 segment; short_link_miss counts unknown codes per client address
--   (too many → 429) so codes cannot be guessed.
-- * note_version.medicines (drug, dose, how to take) and note_version.patient_summary (what the doctor
--   chose to share with the patient: advice, warning signs, whether medicines and the follow-up date go
--   in, whether it goes by SMS). NULL: nothing shared.
-- * outbound_message.kind: 'visit_summary'.

ALTER TABLE facility ADD COLUMN phone text CHECK (phone IS NULL OR phone ~ '^\+?[0-9][0-9 .-]{4,18}[0-9]$');

CREATE TABLE short_link (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9A-Za-z]{10,32}$'),
    link_jti    uuid NOT NULL UNIQUE REFERENCES join_link (jti),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE short_link_miss (
    address       text PRIMARY KEY CHECK (length(address) BETWEEN 1 AND 64),
    window_start  timestamptz NOT NULL,
    misses        int NOT NULL CHECK (misses >= 0)
);
-- Windows that have passed are pruned a few at a time, oldest first.
CREATE INDEX short_link_miss_window ON short_link_miss (window_start);

ALTER TABLE note_version
    ADD COLUMN medicines jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(medicines) = 'array'),
    ADD COLUMN patient_summary jsonb CHECK (patient_summary IS NULL OR jsonb_typeof(patient_summary) = 'object');

ALTER TABLE outbound_message DROP CONSTRAINT outbound_message_kind_check;
ALTER TABLE outbound_message ADD CONSTRAINT outbound_message_kind_check
    CHECK (kind IN ('invitation', 'reminder_day_before', 'reminder_15_min', 'queue_near', 'rescheduled',
                    'revoked', 'visit_summary'));
