-- The newest entry of each audit chain, written in the same transaction as the entry: with
-- it, deleting the newest entries (or a whole chain) is as visible as deleting older ones.
CREATE TABLE audit_heads (
    scope UUID PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    occurred_at BIGINT NOT NULL,
    -- Set by the retention purge when it removed the whole chain (every entry was older
    -- than its cutoff), so that an empty chain is not mistaken for a deleted one.
    purged_through BIGINT
);
