-- What the policies of 0028–0033 opened beyond their use:
-- - a platform administrator's path only reads (their changes go through the organization or
--   the user they concern);
-- - the keyring's upkeep reads and re-wraps keys, and never moves one to another scope;
-- - the audit purge has a setting of its own (the verification log's purge must not reach the
--   chains' heads), and a head never moves to another chain;
-- - the platform's own records (platform_admins, installation) are written by their
--   triggers as the owner: the app role only reads them (see the storage crate's `roles`).

DROP POLICY platform ON users;
CREATE POLICY platform ON users FOR SELECT USING (mailroom_platform_admin());
DROP POLICY platform ON orgs;
CREATE POLICY platform ON orgs FOR SELECT USING (mailroom_platform_admin());
DROP POLICY platform ON org_members;
CREATE POLICY platform ON org_members FOR SELECT USING (mailroom_platform_admin());

DROP POLICY keyring ON data_keys;
CREATE POLICY keyring ON data_keys FOR SELECT
    USING (current_setting('app.keyring', true) = 'on');
CREATE POLICY keyring_rewrap ON data_keys FOR UPDATE
    USING (current_setting('app.keyring', true) = 'on')
    WITH CHECK (current_setting('app.keyring', true) = 'on');
CREATE TRIGGER pin_scope BEFORE UPDATE OF scope ON data_keys
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('scope');

DROP POLICY purge ON audit_log;
DROP POLICY purge_delete ON audit_log;
CREATE POLICY purge ON audit_log FOR SELECT
    USING (occurred_at < NULLIF(current_setting('app.audit_purge_before', true), '')::bigint
           AND occurred_at < mailroom_now_ms() - 7776000000);
CREATE POLICY purge_delete ON audit_log FOR DELETE
    USING (occurred_at < NULLIF(current_setting('app.audit_purge_before', true), '')::bigint
           AND occurred_at < mailroom_now_ms() - 7776000000);
DROP POLICY purge ON audit_heads;
DROP POLICY purge_update ON audit_heads;
CREATE POLICY purge ON audit_heads FOR SELECT
    USING (NULLIF(current_setting('app.audit_purge_before', true), '') IS NOT NULL);
CREATE POLICY purge_update ON audit_heads FOR UPDATE
    USING (NULLIF(current_setting('app.audit_purge_before', true), '') IS NOT NULL)
    WITH CHECK (NULLIF(current_setting('app.audit_purge_before', true), '') IS NOT NULL);
CREATE TRIGGER pin_scope BEFORE UPDATE OF scope ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('scope');

ALTER FUNCTION mailroom_keep_platform_admins() SECURITY DEFINER;
ALTER FUNCTION mailroom_keep_platform_admins() SET search_path FROM CURRENT;
ALTER FUNCTION mailroom_note_first_account() SECURITY DEFINER;
ALTER FUNCTION mailroom_note_first_account() SET search_path FROM CURRENT;
