-- A station may revoke a patient's link after check-in: the patient's access ends but the record stays.
-- Their open queue entry is closed as `cancelled`, with the reason (e.g. `link_revoked`); an active
-- consultation of it ends (outcome = the same reason); notes, chat and history are kept.
ALTER TABLE queue_entry DROP CONSTRAINT queue_entry_status_check;
ALTER TABLE queue_entry ADD CONSTRAINT queue_entry_status_check
    CHECK (status IN ('waiting', 'claimed', 'in_call', 'done', 'abandoned', 'cancelled'));
ALTER TABLE queue_entry ADD COLUMN cancel_reason text CHECK (length(cancel_reason) <= 100);
