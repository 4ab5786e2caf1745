-- Who is online on each app process sharing this database (DONGHANH_BUS): the same facts every `queue`
-- notification carries (signaling/hub.py), kept so that a process that starts knows them at once instead
-- of counting nobody, and marking everyone else's patients offline, until the others answer. A process
-- rewrites its row when what it holds changes and deletes it when it stops; rows not refreshed within the
-- presence TTL belong to processes that died and are ignored (and removed by the next process to start).
CREATE TABLE process_presence (
    process_id text PRIMARY KEY,
    doctors    jsonb NOT NULL,      -- [[staff id, facility id, role], ...]: staff who may claim, online there
    pages      jsonb NOT NULL,      -- [[staff id, open pages], ...]: every staff member with a page open there
    patients   integer[] NOT NULL,  -- patients with a page open there
    seen_at    timestamptz NOT NULL DEFAULT now()
);
