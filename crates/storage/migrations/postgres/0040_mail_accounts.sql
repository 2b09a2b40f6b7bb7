-- The mail accounts an organization connects to send from and read: an SMTP relay, an IMAP
-- mailbox (with SMTP submission, optionally) or a Google account. Where the server is and who
-- to log in as (`settings`, JSON) is no secret; the passwords or the refresh token are, sealed
-- together in `secret` under the organization's data key, bound to the row (SEALED_COLUMNS).
CREATE TABLE mail_accounts (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('google', 'smtp', 'imap')),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    can_send BOOLEAN NOT NULL,
    can_read BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'needs_reconnect', 'disconnected')),
    settings TEXT NOT NULL,
    secret BYTEA,
    -- Other addresses it may send as, a JSON array.
    from_addresses TEXT NOT NULL,
    connected_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_accounts_by_org ON mail_accounts (org_id, created_at);

-- Members, not only owners and admins, may connect accounts.
ALTER TABLE orgs ADD COLUMN members_connect_accounts BOOLEAN NOT NULL DEFAULT FALSE;

-- An organization's accounts are its own (app.org_id). The re-encryption of sealed values
-- reads and re-seals `secret` in place, and nothing else of a row.
ALTER TABLE mail_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE mail_accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON mail_accounts
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY reseal ON mail_accounts FOR SELECT
    USING ((SELECT mailroom_upkeep('app.reseal')));
CREATE POLICY reseal_update ON mail_accounts FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.reseal')))
    WITH CHECK ((SELECT mailroom_upkeep('app.reseal')));
CREATE TRIGGER reseal_only BEFORE UPDATE ON mail_accounts
    FOR EACH ROW EXECUTE FUNCTION mailroom_upkeep_changes_only('org_id', 'app.org_id', 'secret');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON mail_accounts
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
