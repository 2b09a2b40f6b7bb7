-- Each named cross-tenant path opens only the command and the rows its use needs:
-- - an API key lookup reads, and nothing else;
-- - an invitation's token reads and accepts that invitation; an erased address's invitations
--   are read and deleted, not changed;
-- - the job claim may take a queued or running job and leave it running;
-- - the purges read only rows already past their time, the very rows they delete (a DELETE
--   with a WHERE must see its rows): a setting far in the future opens nothing more, and no
--   setting opens nothing (both bounds must hold: LEAST would skip an unset one);
-- - and no row ever moves to another organization, whichever path updates it.

-- 90 days, as the audit log and the verification log are kept (docs/security.md#audit-retention), and 7 days,
-- as the rows of failed and cancelled jobs are; in milliseconds, on the database's clock.
CREATE FUNCTION mailroom_now_ms() RETURNS BIGINT LANGUAGE sql STABLE
    AS $$ SELECT (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT $$;

-- A row never changes hands: the trigger's argument names the column of its owner (org_id,
-- user_id).
CREATE FUNCTION mailroom_pin_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_jsonb(NEW) -> TG_ARGV[0] IS DISTINCT FROM to_jsonb(OLD) -> TG_ARGV[0] THEN
        RAISE EXCEPTION 'a row of % never changes its %', TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON api_keys
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON invitations
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON usage_periods
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON usage_charges
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON verifications
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON verify_jobs
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON verify_job_rows
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

DROP POLICY tenant ON api_keys;
CREATE POLICY tenant ON api_keys
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY lookup ON api_keys FOR SELECT
    USING (lookup_id = NULLIF(current_setting('app.api_key_lookup_id', true), ''));

DROP POLICY tenant ON invitations;
CREATE POLICY tenant ON invitations
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY token ON invitations FOR SELECT
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), ''));
CREATE POLICY token_accept ON invitations FOR UPDATE
    USING (encode(token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), ''))
    WITH CHECK (encode(token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), ''));
CREATE POLICY erasure ON invitations FOR SELECT
    USING (email = NULLIF(current_setting('app.erase_email', true), ''));
CREATE POLICY erasure_delete ON invitations FOR DELETE
    USING (email = NULLIF(current_setting('app.erase_email', true), ''));

DROP POLICY claim ON verify_jobs;
DROP POLICY claim_update ON verify_jobs;
CREATE POLICY claim ON verify_jobs FOR SELECT
    USING (current_setting('app.job_claim', true) = 'on' AND status IN ('queued', 'running'));
CREATE POLICY claim_update ON verify_jobs FOR UPDATE
    USING (current_setting('app.job_claim', true) = 'on' AND status IN ('queued', 'running'))
    WITH CHECK (current_setting('app.job_claim', true) = 'on' AND status = 'running');

DROP POLICY retention ON verifications;
DROP POLICY retention_read ON verifications;
CREATE POLICY retention ON verifications FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000);
CREATE POLICY retention_read ON verifications FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000);

DROP POLICY retention ON verify_jobs;
DROP POLICY retention_read ON verify_jobs;
CREATE POLICY retention ON verify_jobs FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000);
CREATE POLICY retention_read ON verify_jobs FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000);

DROP POLICY ended_jobs ON verify_jobs;
CREATE POLICY ended_jobs ON verify_jobs FOR SELECT
    USING (status IN ('failed', 'cancelled') AND rows_purged_at IS NULL
           AND finished_at < NULLIF(current_setting('app.purge_ended_before', true), '')::bigint
           AND finished_at < mailroom_now_ms() - 604800000);
