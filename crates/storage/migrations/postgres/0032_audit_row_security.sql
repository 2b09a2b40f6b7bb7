-- Row-level security on the audit log and its chains' heads. The app role never edits an
-- entry: it appends to one chain at a time, reads an organization's entries as that
-- organization and a person's own as that person, and otherwise only on named paths:
-- - appending to a chain (app.audit_append: its scope) reads that chain's newest entry and
--   head and extends them;
-- - erasing a person (app.erase_user, app.erase_email, at app.erased_at) blanks the personal
--   fields of the entries by or about them, as `erase_personal_fields` finds them, and
--   nothing else;
-- - the retention purge reads and deletes entries past 90 days (on the database's clock, and
--   before its setting), and moves the start of the chains it shortened;
-- - `mailroom audit verify` reads every chain.

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_log FOR SELECT
    USING (scope = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY actor ON audit_log FOR SELECT
    USING (actor_user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY append ON audit_log FOR SELECT
    USING (scope = NULLIF(current_setting('app.audit_append', true), '')::uuid);
CREATE POLICY append_insert ON audit_log FOR INSERT
    WITH CHECK (scope = NULLIF(current_setting('app.audit_append', true), '')::uuid);
CREATE POLICY erasure ON audit_log FOR SELECT
    USING (erased_at IS NULL AND (
        actor_user_id = NULLIF(current_setting('app.erase_user', true), '')::uuid
        OR subject = NULLIF(current_setting('app.erase_email', true), '')
        OR (subject IS NULL AND lower(target) IN (
            NULLIF(current_setting('app.erase_email', true), ''),
            NULLIF(current_setting('app.erase_email', true), '') || ' as owner',
            NULLIF(current_setting('app.erase_email', true), '') || ' as admin',
            NULLIF(current_setting('app.erase_email', true), '') || ' as member'))));
CREATE POLICY erasure_update ON audit_log FOR UPDATE
    USING (erased_at IS NULL AND (
        actor_user_id = NULLIF(current_setting('app.erase_user', true), '')::uuid
        OR subject = NULLIF(current_setting('app.erase_email', true), '')
        OR (subject IS NULL AND lower(target) IN (
            NULLIF(current_setting('app.erase_email', true), ''),
            NULLIF(current_setting('app.erase_email', true), '') || ' as owner',
            NULLIF(current_setting('app.erase_email', true), '') || ' as admin',
            NULLIF(current_setting('app.erase_email', true), '') || ' as member'))))
    WITH CHECK (erased_at = NULLIF(current_setting('app.erased_at', true), '')::bigint
                AND actor_user_id IS NULL AND target IS NULL AND ip IS NULL
                AND user_agent IS NULL AND subject IS NULL);
-- An UPDATE's new row must be visible too: the entries this erasure has just blanked.
CREATE POLICY erased ON audit_log FOR SELECT
    USING (erased_at = NULLIF(current_setting('app.erased_at', true), '')::bigint);
CREATE POLICY purge ON audit_log FOR SELECT
    USING (occurred_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND occurred_at < mailroom_now_ms() - 7776000000);
CREATE POLICY purge_delete ON audit_log FOR DELETE
    USING (occurred_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND occurred_at < mailroom_now_ms() - 7776000000);
CREATE POLICY verify ON audit_log FOR SELECT
    USING (current_setting('app.audit_verify', true) = 'on');

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY append ON audit_heads
    USING (scope = NULLIF(current_setting('app.audit_append', true), '')::uuid)
    WITH CHECK (scope = NULLIF(current_setting('app.audit_append', true), '')::uuid);
CREATE POLICY purge ON audit_heads FOR SELECT
    USING (NULLIF(current_setting('app.purge_before', true), '') IS NOT NULL);
CREATE POLICY purge_update ON audit_heads FOR UPDATE
    USING (NULLIF(current_setting('app.purge_before', true), '') IS NOT NULL)
    WITH CHECK (NULLIF(current_setting('app.purge_before', true), '') IS NOT NULL);
CREATE POLICY verify ON audit_heads FOR SELECT
    USING (current_setting('app.audit_verify', true) = 'on');

-- An entry never moves to another chain.
CREATE TRIGGER pin_scope BEFORE UPDATE OF scope ON audit_log
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('scope');
