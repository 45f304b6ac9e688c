-- Credits (docs/api.md §14). On the key: the credits not leased to any instance
-- (`credits_remaining`, NULL: unlimited), the refill period and the generation (bumped when
-- the budget is set anew) they belong to, and the refill schedule. Instances spend leased
-- blocks in memory; `credit_leases` is what each holds unspent, reported every few seconds,
-- so that the remaining credits read through the API count them.
ALTER TABLE api_keys ADD COLUMN credits_remaining BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_period BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN credits_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN credits_refill_amount BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_refill_interval TEXT;
ALTER TABLE api_keys ADD COLUMN credits_refill_day BIGINT;
CREATE TABLE credit_leases (
    key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    period      BIGINT NOT NULL,
    unspent     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (key_id, instance_id)
);
