-- The one-time link that creates the first account, a super-admin, on a fresh install. One
-- row at most; only the token's SHA-256 is kept.
CREATE TABLE setup_token (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    token_hash BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);
