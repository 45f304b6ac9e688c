-- Refused requests by reason (docs/api.md §11), beside the hourly buckets by outcome: a key's
-- usage can say how many of its requests were rate limited, out of credits, from an address
-- not allowed, outside their data boundary, and so on. Written by the same batched flush and
-- pruned with the buckets; `workspace_id` copied from the key, as there.
CREATE TABLE key_usage_refusals (
    key_id       TEXT NOT NULL REFERENCES api_keys (id),
    workspace_id TEXT NOT NULL,
    hour_start   BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    requests     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour_start, reason)
);
CREATE INDEX key_usage_refusals_workspace ON key_usage_refusals (workspace_id, hour_start);
CREATE INDEX key_usage_refusals_hour ON key_usage_refusals (hour_start);
