-- Bulk verification runs on the work queue (PostgreSQL's migration 0039 says more).
ALTER TABLE verify_jobs DROP COLUMN lease_until;
INSERT INTO jobs (id, org_id, kind, payload, status, run_at, attempts, max_attempts, created_at)
SELECT id, org_id, 'bulk_verification', X'', 'queued', created_at, 0, 20, created_at
FROM verify_jobs WHERE status IN ('queued', 'running')
ON CONFLICT DO NOTHING;
