-- Per-key usage in hourly buckets by outcome (SPEC §11), written by the batched usage flush
-- (one upsert per flush) and pruned after HEFFL_USAGE_RETENTION_DAYS. `workspace_id` is
-- copied from the key so that every read filters by workspace in SQL.
CREATE TABLE key_usage_hours (
    key_id       TEXT NOT NULL REFERENCES api_keys (id),
    workspace_id TEXT NOT NULL,
    hour_start   BIGINT NOT NULL,
    success      BIGINT NOT NULL DEFAULT 0,
    client_error BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    rejected     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour_start)
);
CREATE INDEX key_usage_hours_workspace ON key_usage_hours (workspace_id, hour_start);
CREATE INDEX key_usage_hours_hour ON key_usage_hours (hour_start);
