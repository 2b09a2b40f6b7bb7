-- Every verification: the log an organization reads, and the store that dedup answers
-- from. `address` is the normalized address, or the input as given when it does not parse.
-- Kept 90 days, like the audit log.
CREATE TABLE verifications (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id BLOB REFERENCES users (id) ON DELETE SET NULL,
    api_key_id BLOB REFERENCES api_keys (id) ON DELETE SET NULL,
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
