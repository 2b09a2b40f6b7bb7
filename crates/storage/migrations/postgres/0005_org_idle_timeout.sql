-- An organization may sign its members' browser sessions out after this many seconds
-- without use (NULL: only the 30-day rolling expiry applies).
ALTER TABLE orgs ADD COLUMN session_idle_timeout_secs BIGINT;
