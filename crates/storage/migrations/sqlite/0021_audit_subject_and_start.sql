-- The person an entry is about, by normalized address: account deletion erases the entries
-- whose subject equals the deleted address, never those whose target merely contains it.
-- Covered by the entry's personal digest (as a trailing part, so older digests still hold).
ALTER TABLE audit_log ADD COLUMN subject TEXT;
CREATE INDEX audit_log_by_subject ON audit_log (subject) WHERE subject IS NOT NULL;
-- Where each chain legitimately starts: seq 1 until the retention purge moves it, in the
-- purge's own transaction, past what it removed. Covered by the head's MAC, so deleting a
-- chain's oldest entries is as visible as deleting any others. NULL on heads written before
-- this migration (the next append sets it).
ALTER TABLE audit_heads ADD COLUMN first_seq BIGINT;
