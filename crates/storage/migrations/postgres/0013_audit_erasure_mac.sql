-- An erasure is proven by a MAC under the audit key (of the entry id and erased_at): without
-- the key, nobody can mark an entry erased to rewrite or blank its personal fields.
ALTER TABLE audit_log ADD COLUMN erasure_mac BYTEA;
