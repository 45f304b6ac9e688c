-- SPEC §10: people join a workspace only by accepting an invitation. The token is stored as
-- SHA-256, like a session token, so a copy of this table lets nobody join.
CREATE TABLE invitations (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_digest     BYTEA NOT NULL,
    invited_by       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    accepted_at      BIGINT,
    accepted_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    cancelled_at     BIGINT,
    CONSTRAINT invitations_token_digest_key UNIQUE (token_digest)
);
CREATE INDEX invitations_workspace_idx ON invitations (workspace_id, created_at DESC);

-- Operator commands (`heffl-api users …`, `members …`) are audited with the operator as actor.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_type_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_type_check
    CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous', 'operator'));
-- Account-level events (failed sign-ins, password changes) have no workspace.
CREATE INDEX audit_events_target_idx ON audit_events (target_id, seq DESC);
