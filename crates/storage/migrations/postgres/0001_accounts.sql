-- Accounts, organizations and browser sessions (docs/security.md#email-codes, #password-hashing, #lockout).
-- Times are Unix milliseconds (BIGINT) on both backends, so that one query text compares them
-- the same way everywhere.

CREATE TABLE orgs (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    -- A user's own organization, created at sign-up.
    personal BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    platform_role TEXT NOT NULL DEFAULT 'user' CHECK (platform_role IN ('user', 'super_admin')),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    lockouts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- One organization per user (docs/security.md#one-org-per-user): user_id is unique.
CREATE TABLE org_members (
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id UUID NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

-- A sign-up waiting for its email code; becomes a user when the code is entered.
CREATE TABLE pending_signups (
    email TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One live code per purpose and address, stored hashed. `attempts` counts every guess and is
-- kept when a code is resent, so resending never buys more guesses.
CREATE TABLE email_codes (
    purpose TEXT NOT NULL CHECK (purpose IN ('signup', 'password_reset')),
    email TEXT NOT NULL,
    code_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, email)
);

CREATE TABLE sessions (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the cookie's secret: the database never holds a usable session token.
    token_hash BYTEA NOT NULL UNIQUE,
    ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
