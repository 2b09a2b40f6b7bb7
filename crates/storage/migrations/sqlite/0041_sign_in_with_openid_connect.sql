-- Sign-in with an OpenID provider (docs/security.md#openid-connect).
-- An account made by a provider's sign-in has no password until its owner sets one through the
-- reset flow: its `password_hash` is '' (SQLite cannot drop the column's NOT NULL in place),
-- which no password ever matches.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN picture_url TEXT;

-- The provider identities that sign a user in, keyed by (issuer, subject), never by email.
CREATE TABLE user_identities (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The name of its [oidc.<name>] section.
    provider TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- The address the provider gave when it was last used.
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);
CREATE INDEX user_identities_by_user ON user_identities (user_id);

-- The state of every callback taken, until its flow would have expired anyway: a flow is
-- answered once (a replayed callback is refused).
CREATE TABLE oauth_spent_states (
    state_hash BLOB PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
