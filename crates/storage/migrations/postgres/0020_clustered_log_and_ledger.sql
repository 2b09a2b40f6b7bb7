-- SQLite's migration 0020 stores the verification log and the ledger's charges in their
-- primary keys' order (WITHOUT ROWID), which PostgreSQL's tables have no counterpart of. This
-- migration exists so that both backends carry the same versions.
SELECT 1;
