-- Row-level security on the tables of a user's second factors and devices: each row is its
-- user's, visible to a transaction acting for that user (app.user_id). The named paths:
-- - a sign-in challenge found by its token's hash, to spend it;
-- - the mfa state of an organization's members, read (whether each has a second factor);
-- - the background re-encryption of TOTP secrets (sealed), read and re-sealed in place;
-- - expired challenges and trusted devices, read and deleted.
-- No row ever moves to another user (mailroom_pin_owner, migration 0026).

ALTER TABLE mfa_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_totp FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON mfa_totp
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY members ON mfa_totp FOR SELECT
    USING (user_id IN (SELECT m.user_id FROM org_members m
                       WHERE m.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid));
CREATE POLICY reseal ON mfa_totp FOR SELECT
    USING (current_setting('app.reseal', true) = 'on');
CREATE POLICY reseal_update ON mfa_totp FOR UPDATE
    USING (current_setting('app.reseal', true) = 'on')
    WITH CHECK (current_setting('app.reseal', true) = 'on');
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON mfa_totp
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');

ALTER TABLE mfa_backup_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_backup_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON mfa_backup_codes
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);

ALTER TABLE mfa_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON mfa_challenges
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY token ON mfa_challenges FOR SELECT
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.mfa_challenge', true), ''));
CREATE POLICY token_spend ON mfa_challenges FOR DELETE
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.mfa_challenge', true), ''));
CREATE POLICY expired ON mfa_challenges FOR SELECT
    USING (expires_at <= NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND expires_at <= mailroom_now_ms());
CREATE POLICY expired_delete ON mfa_challenges FOR DELETE
    USING (expires_at <= NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND expires_at <= mailroom_now_ms());

ALTER TABLE trusted_devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE trusted_devices FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON trusted_devices
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY expired ON trusted_devices FOR SELECT
    USING (expires_at <= NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND expires_at <= mailroom_now_ms());
CREATE POLICY expired_delete ON trusted_devices FOR DELETE
    USING (expires_at <= NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND expires_at <= mailroom_now_ms());
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON trusted_devices
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');

ALTER TABLE sign_in_devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE sign_in_devices FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON sign_in_devices
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
