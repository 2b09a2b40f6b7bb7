-- API keys (docs/security.md#api-key-format, #api-key-scopes): found by their non-secret lookup id, checked against the SHA-256
-- of the whole key; the key itself is never stored.
CREATE TABLE api_keys (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    created_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    lookup_id TEXT NOT NULL UNIQUE,
    key_hash BLOB NOT NULL,
    -- Space-separated scope names.
    scopes TEXT NOT NULL,
    -- Overrides of the plan's per-key limits; NULL: the plan's.
    requests_per_minute INTEGER,
    requests_per_day INTEGER,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);

-- Whether members (not only owners and admins) may create keys.
ALTER TABLE orgs ADD COLUMN members_create_keys BOOLEAN NOT NULL DEFAULT FALSE;
