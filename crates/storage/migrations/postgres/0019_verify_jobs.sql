-- Bulk verification jobs: the addresses as uploaded, row by row, each pointing at its
-- logged result once checked. A job is worked by one node at a time, under a lease that the
-- node renews while it lives; a job whose lease ran out is taken up by another node, and
-- resumes at its first unchecked row.
CREATE TABLE verify_jobs (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    api_key_id UUID REFERENCES api_keys (id) ON DELETE SET NULL,
    -- queued, running, done, cancelled or failed.
    status TEXT NOT NULL,
    -- Why a failed job failed (a stable code, e.g. quota_exceeded).
    error TEXT,
    smtp BOOLEAN NOT NULL,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    deliverable BIGINT NOT NULL DEFAULT 0,
    undeliverable BIGINT NOT NULL DEFAULT 0,
    risky BIGINT NOT NULL DEFAULT 0,
    unknown BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- The node working it, and until when its claim holds.
    worker TEXT,
    lease_until BIGINT
);
CREATE INDEX verify_jobs_by_org ON verify_jobs (org_id, created_at);
CREATE INDEX verify_jobs_waiting ON verify_jobs (status, created_at);

CREATE TABLE verify_job_rows (
    job_id UUID NOT NULL REFERENCES verify_jobs (id) ON DELETE CASCADE,
    row_no BIGINT NOT NULL,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    -- Its result in the log; NULL until checked. The log outlives no job: both go at 90 days.
    verification_id UUID,
    PRIMARY KEY (job_id, row_no)
);

ALTER TABLE verify_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE verify_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON verify_jobs
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
-- A worker looking for work sees every organization's jobs that wait for one, and may claim
-- them; the rows of a job it reads only as that job's organization.
CREATE POLICY claim ON verify_jobs FOR SELECT
    USING (current_setting('app.job_claim', true) = 'on' AND status IN ('queued', 'running'));
CREATE POLICY claim_update ON verify_jobs FOR UPDATE
    USING (current_setting('app.job_claim', true) = 'on' AND status IN ('queued', 'running'));
CREATE POLICY retention ON verify_jobs FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint);
CREATE POLICY retention_read ON verify_jobs FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint);

ALTER TABLE verify_job_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE verify_job_rows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON verify_job_rows
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
