-- Sign-in throttling (OWASP ASVS V2.2): failed attempts counted per account, per client address and
-- per trusted device, in PostgreSQL so the limits hold across restarts and across app processes.
-- `subject` never holds a typed username: accounts and devices are keyed by an HMAC of the name
-- (the app's secret key), addresses by the client IP.
CREATE TABLE signin_throttle (
    kind             text NOT NULL CHECK (kind IN ('account', 'address', 'device')),
    subject          text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    failures         integer NOT NULL CHECK (failures >= 0),
    last_failure_at  timestamptz NOT NULL,
    -- No attempt is checked before this time (a growing delay, then a temporary lock).
    blocked_until    timestamptz,
    PRIMARY KEY (kind, subject)
);
-- For pruning rows whose failures have been forgotten.
CREATE INDEX signin_throttle_last_failure ON signin_throttle (last_failure_at);
