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
    sent_at BIGINT
);
CREATE INDEX emails_by_org ON emails (org_id, created_at, id);

-- Each recipient's outcome.
CREATE TABLE email_recipients (
    email_id UUID NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
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
CREATE TRIGGER reseal_only BEFORE UPDATE ON emails
    FOR EACH ROW EXECUTE FUNCTION mailroom_upkeep_changes_only('org_id', 'app.org_id', 'content');
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
