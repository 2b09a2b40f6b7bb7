-- The audit log (docs/security.md#audit-events, #audit-retention, #audit-chain): append-only, one hash chain per scope (an organization, or the nil
-- UUID for events that belong to none). `seq` numbers a scope's entries without gaps; `hash`
-- covers the entry and `prev_hash`, the hash of the entry before it.

CREATE TABLE audit_log (
    id BLOB PRIMARY KEY,
    scope BLOB NOT NULL,
    seq BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    actor_user_id BLOB,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    target TEXT,
    ip TEXT,
    user_agent TEXT,
    session_id BLOB,
    api_key_id BLOB,
    request_id BLOB,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    UNIQUE (scope, seq)
);
CREATE INDEX audit_log_by_actor ON audit_log (actor_user_id, id);
CREATE INDEX audit_log_by_time ON audit_log (occurred_at);
