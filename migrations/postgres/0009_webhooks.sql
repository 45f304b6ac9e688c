-- Webhooks (docs/api.md §15). Endpoints are registered per workspace by owners and admins.
-- Their signing secret is stored as it is, since every delivery is signed with it; a rolled
-- secret keeps signing beside the new one until `previous_secret_until`.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    workspace_id          TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url                   TEXT NOT NULL,
    description           TEXT,
    events                TEXT NOT NULL,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until BIGINT,
    disabled_at           BIGINT,
    disabled_reason       TEXT,
    failing_since         BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_workspace_idx ON webhook_endpoints (workspace_id, created_at);

-- The outbox: one message per event and endpoint, written in the transaction of the change it
-- reports, so a crash after the commit cannot lose it. An instance claims a due message for a
-- while (`claim_token`, `claimed_until`) before sending it, so no two send it at once; its id is
-- the `webhook-id` of every try.
CREATE TABLE webhook_messages (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT,
    last_attempt_at BIGINT,
    next_attempt_at BIGINT,
    claim_token     TEXT,
    claimed_until   BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_messages_due_idx ON webhook_messages (status, next_attempt_at);
CREATE INDEX webhook_messages_endpoint_idx ON webhook_messages (endpoint_id, created_at, id);

-- Notices sent once per key (api_key.expiring 7 and 1 days before, api_key.credits_low once per
-- budget and refill period), whichever instance sees the moment first.
CREATE TABLE key_notices (
    key_id  TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    notice  TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, notice)
);
-- What "low" is measured against when a budget has no refill: the credits it was set to.
ALTER TABLE api_keys ADD COLUMN credits_initial BIGINT;
