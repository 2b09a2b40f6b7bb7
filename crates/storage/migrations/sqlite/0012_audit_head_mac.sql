-- The head of each chain is keyed too: without the audit key, nobody can point a head at an
-- earlier entry after deleting the newest ones, or mark a deleted chain as purged.
ALTER TABLE audit_heads ADD COLUMN mac BLOB;
