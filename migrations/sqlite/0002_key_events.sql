-- Changes that make a cached key verification stale (revocation, role change, removal,
-- disabling). Other server processes on the same database read this log to drop their cache
-- entries; PostgreSQL deployments are also told at once through NOTIFY.
CREATE TABLE key_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL
);
