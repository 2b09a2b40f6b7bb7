-- Two-factor authentication (docs/security.md#totp, #backup-codes, #trusted-devices).

-- A user's TOTP secret, sealed (system scope, bound to this table, column and user id).
-- Pending until the first code confirms it; a step once used is never accepted again.
CREATE TABLE mfa_totp (
    user_id BLOB PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret BLOB NOT NULL,
    enabled_at BIGINT,
    last_used_step BIGINT,
    created_at BIGINT NOT NULL
);

-- Backup codes, as MACs under a server key (the codes are short enough to guess offline).
CREATE TABLE mfa_backup_codes (
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A password accepted, the second factor still owed: what the mfa_token stands for.
CREATE TABLE mfa_challenges (
    token_hash BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);

-- Browsers that skip the second factor for 30 days; the cookie's secret stored hashed.
CREATE TABLE trusted_devices (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX trusted_devices_by_user ON trusted_devices (user_id);

-- An organization may require a second factor of every member.
ALTER TABLE orgs ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT 0;
