-- Refresh tokens for programs (docs/security.md#refresh-tokens). Each password grant starts a family; every use of a
-- token retires it for a child. Only hashes are kept. A child's token is derived from its
-- parent's with a server key, and the access token issued with it is kept as its claims
-- (jti, iat), so that a replay within the grace window gets the very same pair back.
CREATE TABLE refresh_tokens (
    id UUID PRIMARY KEY,
    family_id UUID NOT NULL,
    parent_id UUID,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    access_jti UUID NOT NULL,
    access_iat BIGINT NOT NULL,
    -- The password grant that started the family: recent-auth checks (docs/security.md#recent-auth) look at this,
    -- not at the last rotation.
    authenticated_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Absolute: seven days from the password grant, whatever the rotations.
    family_expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent_id);
