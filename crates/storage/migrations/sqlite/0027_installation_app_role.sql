-- Roles are PostgreSQL's (its migration 0027). This migration exists so that both backends
-- carry the same versions.
SELECT 1;
