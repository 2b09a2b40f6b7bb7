-- Bulk verification jobs: the addresses as uploaded, row by row, each pointing at its
-- logged result once checked. A job is worked by one node at a time, under a lease that the
-- node renews while it lives; a job whose lease ran out is taken up by another node, and
-- resumes at its first unchecked row.
CREATE TABLE verify_jobs (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    api_key_id BLOB REFERENCES api_keys (id) ON DELETE SET NULL,
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
    job_id BLOB NOT NULL REFERENCES verify_jobs (id) ON DELETE CASCADE,
    row_no BIGINT NOT NULL,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    -- Its result in the log; NULL until checked. The log outlives no job: both go at 90 days.
    verification_id BLOB,
    PRIMARY KEY (job_id, row_no)
);
