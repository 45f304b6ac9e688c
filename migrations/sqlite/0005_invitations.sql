-- SPEC §10: people join a workspace only by accepting an invitation. The token is stored as
-- SHA-256, like a session token, so a copy of this table lets nobody join.
CREATE TABLE invitations (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_digest     BLOB NOT NULL,
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
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE audit_events_new (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    actor_type   TEXT NOT NULL
                 CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous', 'operator')),
    actor_id     TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    ip           TEXT,
    user_agent   TEXT,
    details      TEXT,
    at           BIGINT NOT NULL,
    id           TEXT
);
INSERT INTO audit_events_new (seq, workspace_id, actor_type, actor_id, action, target_type,
                              target_id, ip, user_agent, details, at, id)
    SELECT seq, workspace_id, actor_type, actor_id, action, target_type, target_id, ip,
           user_agent, details, at, id
    FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, seq DESC);
CREATE UNIQUE INDEX audit_events_id_key ON audit_events (id);
-- Account-level events (failed sign-ins, password changes) have no workspace.
CREATE INDEX audit_events_target_idx ON audit_events (target_id, seq DESC);
