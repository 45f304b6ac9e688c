-- A key is rolled at most once: the replacement points back at it, and only one may.
CREATE UNIQUE INDEX api_keys_rolled_from_key ON api_keys (rolled_from);
