-- Erasable personal fields (docs/security.md#account-deletion): an entry's hash covers a keyed digest of its actor,
-- target, IP and user agent instead of the fields, so that account deletion can blank them
-- (and say when, in erased_at) while every chain still verifies.
ALTER TABLE audit_log ADD COLUMN personal_digest BLOB;
ALTER TABLE audit_log ADD COLUMN erased_at BIGINT;
