-- One durable work queue for every background job (PostgreSQL's migration 0038 says more).
CREATE TABLE jobs (
    id BLOB PRIMARY KEY,
    org_id BLOB REFERENCES orgs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'dead', 'cancelled')),
    run_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_holder TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs (COALESCE(org_id, X'00000000000000000000000000000000'), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE status = 'running';
