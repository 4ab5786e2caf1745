-- A doctor holds at most one active consultation: a second claim must not strand a patient.
CREATE UNIQUE INDEX consultation_one_active_per_doctor ON consultation (doctor_id) WHERE status = 'active';
