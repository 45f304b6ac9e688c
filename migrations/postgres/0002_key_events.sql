-- Changes that make a cached key verification stale (revocation, role change, removal,
-- disabling). Other server processes learn of them through NOTIFY heffl_key_events, sent in
-- the same transaction; the log lets a reconnecting listener and operators see what changed.
CREATE TABLE key_events (
    seq     BIGSERIAL PRIMARY KEY,
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL
);
