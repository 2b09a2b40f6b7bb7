-- One durable work queue for every background job: system mail first; bulk verification,
-- sending, webhooks and mailbox sync to come, each a kind. A job is its kind and payload, due
-- at `run_at`, claimed under a lease (`lease_holder`, `lease_until`), retried with backoff
-- until its last attempt, after which it is dead and stays visible. Every time the queue
-- compares is the database's clock (mailroom_now_ms): a node whose own clock runs fast
-- cannot take over a live lease.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    -- The organization it works for; NULL for the platform's own (a sign-up's code, say).
    org_id UUID REFERENCES orgs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    -- Enqueueing twice under one key (per organization) makes one job.
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
    ON jobs (COALESCE(org_id, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE status = 'running';

-- An organization's jobs are its own (app.org_id). A platform job is enqueued by whatever
-- transaction causes it, and read by nobody but the queue's upkeep: the runner, which shows
-- the upkeep secret (migration 0037), claims, renews, finishes and lists every job. A payload
-- that holds a secret is sealed, bound to its job: a job forged by a role that cannot seal
-- is refused by the runner.
ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON jobs
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY enqueue_platform ON jobs FOR INSERT
    WITH CHECK (org_id IS NULL AND status = 'queued' AND attempts = 0);
CREATE POLICY queue ON jobs
    USING ((SELECT mailroom_upkeep('app.job_queue')))
    WITH CHECK ((SELECT mailroom_upkeep('app.job_queue')));
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON jobs
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
