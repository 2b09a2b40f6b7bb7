-- Row-level security is PostgreSQL's (its migration 0034). This migration exists so that both
-- backends carry the same versions.
SELECT 1;
