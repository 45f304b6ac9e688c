-- What can be set on a key besides its name (docs/api.md §14). `disabled_at` pauses a key
-- (NULL: enabled); `allowed_ips` holds normalised CIDR blocks separated by spaces (NULL: any
-- address); `meta` a JSON object as text; `external_id` the integrator's own id for whoever
-- the key is for, listed by it within a workspace.
ALTER TABLE api_keys ADD COLUMN description TEXT;
ALTER TABLE api_keys ADD COLUMN disabled_at BIGINT;
ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;
ALTER TABLE api_keys ADD COLUMN meta TEXT;
ALTER TABLE api_keys ADD COLUMN external_id TEXT;
CREATE INDEX api_keys_external_id_idx ON api_keys (workspace_id, external_id);
