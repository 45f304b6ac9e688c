-- Times are Unix epoch milliseconds. Public ids are prefixed random base62 (see src/ids.rs).

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    -- lower-cased copy: emails are unique regardless of case
    email_normalized TEXT NOT NULL,
    name             TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    disabled_at      BIGINT,
    CONSTRAINT users_email_key UNIQUE (email_normalized)
);

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE sessions (
    token_digest BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    workspace_id          TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by            TEXT NOT NULL REFERENCES users (id),
    name                  TEXT NOT NULL,
    digest                BYTEA NOT NULL,
    hint                  TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    last_used_at          BIGINT,
    request_count         BIGINT NOT NULL DEFAULT 0,
    revoked_at            BIGINT,
    revoked_by            TEXT REFERENCES users (id),
    revoke_reason         TEXT,
    -- NULL: every scope (the default); otherwise a space-separated list
    scopes                TEXT,
    expires_at            BIGINT,
    rate_limit_per_minute BIGINT,
    rolled_from           TEXT REFERENCES api_keys (id),
    CONSTRAINT api_keys_digest_key UNIQUE (digest)
);
CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id, created_at DESC);
CREATE INDEX api_keys_creator_idx ON api_keys (workspace_id, created_by, created_at DESC);

CREATE TABLE leads (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id     TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    email        TEXT,
    mobile       TEXT,
    title        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX leads_workspace_idx ON leads (workspace_id, created_at DESC, id);
CREATE INDEX leads_owner_idx ON leads (workspace_id, owner_id, created_at DESC, id);

CREATE TABLE audit_events (
    seq          BIGSERIAL PRIMARY KEY,
    workspace_id TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_type   TEXT NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous')),
    actor_id     TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    ip           TEXT,
    user_agent   TEXT,
    details      TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, seq DESC);
