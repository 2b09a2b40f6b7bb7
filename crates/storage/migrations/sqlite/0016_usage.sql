-- The usage ledger (docs/security.md#key-rate-limits): what each organization used of each metric per period,
-- and every charge by its idempotency key, so that a retried request is never charged twice.
CREATE TABLE usage_periods (
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (org_id, metric, period_start)
);

CREATE TABLE usage_charges (
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    metric TEXT NOT NULL,
    amount BIGINT NOT NULL,
    period_start BIGINT NOT NULL,
    charged_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
);
CREATE INDEX usage_charges_by_time ON usage_charges (charged_at);
