-- Bulk verification runs on the work queue (0038): a bulk job is also a job of the queue, of
-- kind `bulk_verification` and the same id, enqueued in the transaction that stores it, and
-- claimed, leased (on the database's clock) and retried there. `verify_jobs` keeps the job's
-- rows, counters and state; its own lease goes. `worker` stays, as the fence: the queue's
-- claim (holder and attempt) under which the job's rows may be written.
DROP POLICY claim ON verify_jobs;
DROP POLICY claim_update ON verify_jobs;
ALTER TABLE verify_jobs DROP COLUMN lease_until;

-- The open jobs carry on under the queue. The owner copies them past its own row policies, in
-- this migration's transaction only.
ALTER TABLE verify_jobs NO FORCE ROW LEVEL SECURITY;
ALTER TABLE jobs NO FORCE ROW LEVEL SECURITY;
INSERT INTO jobs (id, org_id, kind, payload, status, run_at, attempts, max_attempts, created_at)
SELECT id, org_id, 'bulk_verification', ''::bytea, 'queued', created_at, 0, 20, created_at
FROM verify_jobs WHERE status IN ('queued', 'running')
ON CONFLICT DO NOTHING;
ALTER TABLE verify_jobs FORCE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
