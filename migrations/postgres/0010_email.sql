-- Emailed invitations (docs/api.md §10): whether the invitation's email went out, and why not.
-- NULL when the server sends no email: the inviter hands the link over.
ALTER TABLE invitations ADD COLUMN email_status TEXT
    CHECK (email_status IN ('pending', 'sent', 'failed'));
ALTER TABLE invitations ADD COLUMN emailed_at BIGINT;
ALTER TABLE invitations ADD COLUMN email_failed_at BIGINT;
ALTER TABLE invitations ADD COLUMN email_failure TEXT;

-- "Forgot password?": one row per emailed link. The token is stored as SHA-256, like a
-- session's, so a copy of this table resets nothing; a row is used once.
CREATE TABLE password_resets (
    token_digest BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
CREATE INDEX password_resets_expires_idx ON password_resets (expires_at);
