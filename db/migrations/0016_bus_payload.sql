-- Cross-process messages too large for a NOTIFY payload (PostgreSQL's limit is 8000 bytes): the
-- notification carries the row id, each process reads the row (signaling/bus.py). Rows are deleted a few
-- minutes later by the publishers themselves.
CREATE TABLE bus_payload (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bus_payload_created ON bus_payload (created_at);
