-- Messages an organization sends through its connected accounts (docs/security.md#sending).
-- What a message is (who sent it, to how many, its size, its tags, its status) is kept as it
-- is; what it says (the envelope and the message itself) is sealed in `content` under the
-- organization's data key, bound to the row (SEALED_COLUMNS), until it is purged.
CREATE TABLE emails (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    mail_account_id UUID REFERENCES mail_accounts (id) ON DELETE SET NULL,
    status TEXT NOT NULL CHECK (status IN
        ('scheduled', 'queued', 'sending', 'sent', 'partially_failed', 'failed', 'canceled')),
    from_address TEXT NOT NULL,
    recipient_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    -- A JSON array of {name, value}.
    tags TEXT NOT NULL,
    content BYTEA,
    last_error TEXT,
    created_by UUID REFERENCES users (id) ON DELETE SET NULL,
    api_key_id UUID,
    created_at BIGINT NOT NULL,
    -- When it is to go, if it was scheduled.
    scheduled_at BIGINT,
    sent_at BIGINT
);
CREATE INDEX emails_by_org ON emails (org_id, created_at, id);

-- Each recipient's outcome (`suppressed`: on the organization's suppression list, skipped).
CREATE TABLE email_recipients (
    email_id UUID NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    reply TEXT,
    PRIMARY KEY (email_id, address)
);

-- Every try at delivering a message: when, through what, what the server said.
CREATE TABLE email_attempts (
    id UUID PRIMARY KEY,
    email_id UUID NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    transport TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'deferred', 'failed')),
    reply TEXT NOT NULL,
    enhanced_code TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX email_attempts_by_email ON email_attempts (email_id, at);

-- An organization's messages are its own (app.org_id). The re-encryption of sealed values
-- reads and re-seals `content` in place, and nothing else of a row.
ALTER TABLE emails ENABLE ROW LEVEL SECURITY;
ALTER TABLE emails FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON emails
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY reseal ON emails FOR SELECT
    USING ((SELECT mailroom_upkeep('app.reseal')));
CREATE POLICY reseal_update ON emails FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.reseal')))
    WITH CHECK ((SELECT mailroom_upkeep('app.reseal')));
-- The upkeep guard of a table whose rows name a user: a user's deletion empties that column
-- (ON DELETE SET NULL) in every organization they acted in, whoever the deleting transaction
-- acts for; that change, and only it, passes too.
CREATE FUNCTION mailroom_upkeep_changes_only_or_unlinks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(OLD) ->> TG_ARGV[0])
           IS DISTINCT FROM NULLIF(current_setting(TG_ARGV[1], true), '')
       AND to_jsonb(NEW) - TG_ARGV[2] IS DISTINCT FROM to_jsonb(OLD) - TG_ARGV[2]
       AND NOT ((to_jsonb(NEW) ->> TG_ARGV[3]) IS NULL
                AND to_jsonb(NEW) - TG_ARGV[3] = to_jsonb(OLD) - TG_ARGV[3]) THEN
        RAISE EXCEPTION 'the upkeep of % changes its % and nothing else', TG_TABLE_NAME, TG_ARGV[2]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER reseal_only BEFORE UPDATE ON emails
    FOR EACH ROW EXECUTE FUNCTION
    mailroom_upkeep_changes_only_or_unlinks('org_id', 'app.org_id', 'content', 'created_by');
-- Migration 0040's accounts name their connector the same way.
DROP TRIGGER reseal_only ON mail_accounts;
CREATE TRIGGER reseal_only BEFORE UPDATE ON mail_accounts
    FOR EACH ROW EXECUTE FUNCTION
    mailroom_upkeep_changes_only_or_unlinks('org_id', 'app.org_id', 'secret', 'connected_by');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON emails
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

ALTER TABLE email_recipients ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_recipients FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON email_recipients
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON email_recipients
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

ALTER TABLE email_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON email_attempts
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON email_attempts
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

-- The organization's suppression list: addresses refused for good, or added by hand.
CREATE TABLE suppressions (
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('bounced', 'manual')),
    -- What the server said, for a bounce.
    reply TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, address)
);

-- Idempotency keys of message requests, kept 24 hours: the request's hash, and the message it
-- made once it is made; a request under way holds the key until `locked_until`.
CREATE TABLE idempotency_keys (
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    email_id UUID,
    locked_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

-- Messages count against a monthly quota of the plan.
ALTER TABLE plans ADD COLUMN emails_per_month BIGINT NOT NULL DEFAULT 3000;
UPDATE plans SET emails_per_month = 50000 WHERE team;

ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY;
ALTER TABLE suppressions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON suppressions
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON suppressions
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON idempotency_keys
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
-- The hourly purge deletes keys past their 24 hours, whoever's they are (app.purge_before).
CREATE POLICY expiry ON idempotency_keys FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 86400000);
CREATE POLICY expiry_read ON idempotency_keys FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 86400000);
-- What a message said is kept 90 days, as the audit entries are: the hourly purge empties
-- `content` of older messages, whoever's they are (app.purge_before); the upkeep guard above
-- lets it change that column and nothing else.
CREATE POLICY retention_read ON emails FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000);
CREATE POLICY retention ON emails FOR UPDATE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 7776000000)
    WITH CHECK (content IS NULL);
