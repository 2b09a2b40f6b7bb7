-- Messages an organization sends (PostgreSQL's migration 0042 says more).
CREATE TABLE emails (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    mail_account_id BLOB REFERENCES mail_accounts (id) ON DELETE SET NULL,
    status TEXT NOT NULL CHECK (status IN
        ('scheduled', 'queued', 'sending', 'sent', 'partially_failed', 'failed', 'canceled')),
    from_address TEXT NOT NULL,
    recipient_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    tags TEXT NOT NULL,
    content BLOB,
    last_error TEXT,
    created_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    api_key_id BLOB,
    created_at BIGINT NOT NULL,
    -- When it is to go, if it was scheduled.
    scheduled_at BIGINT,
    sent_at BIGINT
);
CREATE INDEX emails_by_org ON emails (org_id, created_at, id);

CREATE TABLE email_recipients (
    email_id BLOB NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    reply TEXT,
    PRIMARY KEY (email_id, address)
);

CREATE TABLE email_attempts (
    id BLOB PRIMARY KEY,
    email_id BLOB NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    transport TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'deferred', 'failed')),
    reply TEXT NOT NULL,
    enhanced_code TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX email_attempts_by_email ON email_attempts (email_id, at);

CREATE TABLE suppressions (
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('bounced', 'manual')),
    reply TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, address)
);

CREATE TABLE idempotency_keys (
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    email_id BLOB,
    locked_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

ALTER TABLE plans ADD COLUMN emails_per_month BIGINT NOT NULL DEFAULT 3000;
UPDATE plans SET emails_per_month = 50000 WHERE team;
