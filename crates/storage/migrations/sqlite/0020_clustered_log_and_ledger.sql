-- The verification log and the ledger's charges, stored in the order they are looked up in
-- (WITHOUT ROWID: each row lives in its primary key's b-tree). A charged verification wrote
-- eight b-trees: the log's table, its id, organization, dedup and time indexes, the charges'
-- table, key and time indexes; it now writes five. The log's id index goes with it: every
-- query of the log names the organization, and (org_id, id) is its new key.
-- Copies both tables once, in the migration's transaction.
CREATE TABLE verifications_clustered (
    id BLOB NOT NULL,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    api_key_id BLOB REFERENCES api_keys (id) ON DELETE SET NULL,
    address TEXT NOT NULL,
    verdict TEXT NOT NULL,
    cached BOOLEAN NOT NULL,
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
) WITHOUT ROWID;
INSERT INTO verifications_clustered
    SELECT id, org_id, user_id, api_key_id, address, verdict, cached, result, created_at
    FROM verifications;
DROP TABLE verifications;
ALTER TABLE verifications_clustered RENAME TO verifications;
CREATE INDEX verifications_checked ON verifications (org_id, address, created_at) WHERE NOT cached;
CREATE INDEX verifications_by_time ON verifications (created_at);

CREATE TABLE usage_charges_clustered (
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    metric TEXT NOT NULL,
    amount BIGINT NOT NULL,
    period_start BIGINT NOT NULL,
    charged_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
) WITHOUT ROWID;
INSERT INTO usage_charges_clustered
    SELECT org_id, idempotency_key, metric, amount, period_start, charged_at FROM usage_charges;
DROP TABLE usage_charges;
ALTER TABLE usage_charges_clustered RENAME TO usage_charges;
CREATE INDEX usage_charges_by_time ON usage_charges (charged_at);
