-- Sign-in with an OpenID provider (docs/security.md#openid-connect).
-- An account made by a provider's sign-in has no password until its owner sets one through the
-- reset flow: its `password_hash` is '' (as on SQLite), which no password ever matches.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN picture_url TEXT;

-- The provider identities that sign a user in, keyed by (issuer, subject), never by email.
CREATE TABLE user_identities (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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

-- A user's identities are theirs (app.user_id); a sign-in finds the one identity it presents
-- (app.identity: the issuer and the subject, separated by a space), and reads only that.
ALTER TABLE user_identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_identities FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON user_identities
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY sign_in ON user_identities FOR SELECT
    USING (issuer || ' ' || subject = NULLIF(current_setting('app.identity', true), ''));
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON user_identities
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');

-- The state of every callback taken, until its flow would have expired anyway: a flow is
-- answered once (a replayed callback is refused). Random values' hashes, nobody's data: a
-- table of the platform's, like the setup token's.
CREATE TABLE oauth_spent_states (
    state_hash BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
