-- PostgreSQL's (its migration 0037): SQLite has no roles and no row policies to key. This
-- migration exists so that both backends carry the same versions.
SELECT 1;
