-- Staff messages about a patient (issues 10 and 11, point 5: "send instructions to the commune doctor",
-- "message the commune doctor"). A thread is about one patient; its recipients are the staff of the
-- patient's station (patient.facility_id: doctors, specialists, nurses), and everyone who wrote in it.
-- Messages are records: append-only like signed notes. Each reader's position is one row (unread counts).

CREATE TABLE staff_thread (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id  bigint NOT NULL REFERENCES patient (id),
    context     text CHECK (context IN ('htn', 'tb')),               -- the register it came from, if any
    reason      text CHECK (length(reason) BETWEEN 1 AND 40),       -- the worklist reason the row showed
    started_by  bigint NOT NULL REFERENCES staff (id),
    started_at  timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,                               -- the latest message's time (inbox order)
    CHECK (reason IS NULL OR context IS NOT NULL)
);
CREATE INDEX staff_thread_patient ON staff_thread (patient_id, last_at DESC);

CREATE TABLE staff_thread_message (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id  uuid NOT NULL REFERENCES staff_thread (id),
    author_id  bigint NOT NULL REFERENCES staff (id),
    body       text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 2000),
    at         timestamptz NOT NULL
);
CREATE INDEX staff_thread_message_thread ON staff_thread_message (thread_id, id);
CREATE INDEX staff_thread_message_author ON staff_thread_message (author_id, thread_id);

CREATE TRIGGER staff_thread_message_append_only BEFORE UPDATE OR DELETE ON staff_thread_message
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- How far each staff member has read a thread: messages with a larger id (by others) are unread.
CREATE TABLE staff_thread_read (
    thread_id   uuid NOT NULL REFERENCES staff_thread (id),
    staff_id    bigint NOT NULL REFERENCES staff (id),
    read_up_to  bigint NOT NULL,
    PRIMARY KEY (staff_id, thread_id)
);
