-- The mail accounts an organization connects (PostgreSQL's migration 0040 says more).
CREATE TABLE mail_accounts (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('google', 'smtp', 'imap')),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    can_send BOOLEAN NOT NULL,
    can_read BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'needs_reconnect', 'disconnected')),
    settings TEXT NOT NULL,
    secret BLOB,
    from_addresses TEXT NOT NULL,
    connected_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_accounts_by_org ON mail_accounts (org_id, created_at);

ALTER TABLE orgs ADD COLUMN members_connect_accounts BOOLEAN NOT NULL DEFAULT FALSE;
