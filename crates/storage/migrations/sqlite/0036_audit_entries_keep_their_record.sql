-- PostgreSQL's (its migration 0036): there the app role could otherwise reach an entry's record
-- through its erasure path. This migration exists so that both backends carry the same versions.
SELECT 1;
