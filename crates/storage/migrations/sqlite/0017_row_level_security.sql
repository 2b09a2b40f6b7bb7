-- Row-level security is PostgreSQL's (its migration 0017). On SQLite, one process owns the
-- file and tenant isolation rests on every query taking the tenant's OrgId. This migration
-- exists so that both backends carry the same versions.
SELECT 1;
