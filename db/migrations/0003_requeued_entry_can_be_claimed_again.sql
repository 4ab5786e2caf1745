-- A requeued patient keeps their queue entry and is claimed again: that is a second consultation for the
-- same entry. Only one of them may be active at a time.
ALTER TABLE consultation DROP CONSTRAINT consultation_queue_entry_id_key;
CREATE UNIQUE INDEX consultation_one_active_per_entry ON consultation (queue_entry_id) WHERE status = 'active';
CREATE INDEX consultation_queue_entry ON consultation (queue_entry_id);
