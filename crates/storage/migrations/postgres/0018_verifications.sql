-- Every verification: the log an organization reads, and the store that dedup answers
-- from. `address` is the normalized address, or the input as given when it does not parse.
-- Kept 90 days, like the audit log.
CREATE TABLE verifications (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    api_key_id UUID REFERENCES api_keys (id) ON DELETE SET NULL,
    address TEXT NOT NULL,
    verdict TEXT NOT NULL,
    -- Answered from an earlier result (and not charged).
    cached BOOLEAN NOT NULL,
    -- The whole result as JSON.
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Dedup reads the results that were checked, not the many answered from them.
CREATE INDEX verifications_checked ON verifications (org_id, address, created_at) WHERE NOT cached;
CREATE INDEX verifications_by_org ON verifications (org_id, id);
CREATE INDEX verifications_by_time ON verifications (created_at);

ALTER TABLE verifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE verifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON verifications
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
-- The retention purge, for every organization at once, and for rows past their time only
-- (a DELETE with a WHERE must see the rows, hence the reading twin).
CREATE POLICY retention ON verifications FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint);
CREATE POLICY retention_read ON verifications FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint);
