-- Row-level security on sessions and refresh tokens: each row is its user's (app.user_id).
-- The named paths are keyed on the secret itself, before its user is known: a session found
-- by its token's hash (read, or ended by a browser signing in again), a refresh token found by
-- its hash (read; the rotation then acts for the token's user).

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON sessions
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY token ON sessions FOR SELECT
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.session_token', true), ''));
CREATE POLICY token_end ON sessions FOR UPDATE
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.session_token', true), ''))
    WITH CHECK (encode(token_hash, 'hex') = NULLIF(current_setting('app.session_token', true), ''));
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON sessions
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON refresh_tokens
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY token ON refresh_tokens FOR SELECT
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.refresh_token', true), ''));
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');
