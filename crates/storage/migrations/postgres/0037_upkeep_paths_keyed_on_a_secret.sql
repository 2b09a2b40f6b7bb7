-- The upkeep paths over every tenant's rows — re-sealing values under a newer data key, the
-- keyring's upkeep, verifying every audit chain, claiming the next verification job — open
-- only for a transaction that shows the installation's upkeep secret. It is derived from the
-- root key, so only a node that holds the master key knows it; the installation keeps its
-- SHA-256, written by the owner when a node unlocks the keyring. Setting a path to 'on', as
-- before, opens nothing.
--
-- What those paths may change of a row that is not the transaction's own: its sealed value
-- (or wrapped key), nothing else.

ALTER TABLE installation ADD COLUMN upkeep_digest BYTEA;

CREATE FUNCTION mailroom_upkeep(setting TEXT) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT COALESCE(sha256(convert_to(current_setting(setting, true), 'UTF8'))
                    = (SELECT upkeep_digest FROM installation WHERE singleton = 1), FALSE)
$$;

-- The trigger's arguments: the column naming the row's owner, the setting that says whose
-- the transaction's own rows are, the one column an upkeep path may change.
CREATE FUNCTION mailroom_upkeep_changes_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(OLD) ->> TG_ARGV[0])
           IS DISTINCT FROM NULLIF(current_setting(TG_ARGV[1], true), '')
       AND to_jsonb(NEW) - TG_ARGV[2] IS DISTINCT FROM to_jsonb(OLD) - TG_ARGV[2] THEN
        RAISE EXCEPTION 'the upkeep of % changes its % and nothing else', TG_TABLE_NAME, TG_ARGV[2]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

DROP POLICY reseal ON mfa_totp;
DROP POLICY reseal_update ON mfa_totp;
CREATE POLICY reseal ON mfa_totp FOR SELECT
    USING ((SELECT mailroom_upkeep('app.reseal')));
CREATE POLICY reseal_update ON mfa_totp FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.reseal')))
    WITH CHECK ((SELECT mailroom_upkeep('app.reseal')));
CREATE TRIGGER reseal_only BEFORE UPDATE ON mfa_totp
    FOR EACH ROW EXECUTE FUNCTION mailroom_upkeep_changes_only('user_id', 'app.user_id', 'secret');

DROP POLICY keyring ON data_keys;
DROP POLICY keyring_rewrap ON data_keys;
CREATE POLICY keyring ON data_keys FOR SELECT
    USING ((SELECT mailroom_upkeep('app.keyring')));
CREATE POLICY keyring_rewrap ON data_keys FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.keyring')))
    WITH CHECK ((SELECT mailroom_upkeep('app.keyring')));
CREATE TRIGGER rewrap_only BEFORE UPDATE ON data_keys
    FOR EACH ROW EXECUTE FUNCTION mailroom_upkeep_changes_only('scope', 'app.key_scope', 'wrapped');

DROP POLICY verify ON audit_log;
CREATE POLICY verify ON audit_log FOR SELECT
    USING ((SELECT mailroom_upkeep('app.audit_verify')));
DROP POLICY verify ON audit_heads;
CREATE POLICY verify ON audit_heads FOR SELECT
    USING ((SELECT mailroom_upkeep('app.audit_verify')));

DROP POLICY claim ON verify_jobs;
DROP POLICY claim_update ON verify_jobs;
CREATE POLICY claim ON verify_jobs FOR SELECT
    USING ((SELECT mailroom_upkeep('app.job_claim')) AND status IN ('queued', 'running'));
CREATE POLICY claim_update ON verify_jobs FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.job_claim')) AND status IN ('queued', 'running'))
    WITH CHECK ((SELECT mailroom_upkeep('app.job_claim')) AND status = 'running');
