-- How many bulk jobs an organization may have queued or running at once.
ALTER TABLE plans ADD COLUMN max_open_jobs INTEGER NOT NULL DEFAULT 5;
-- What each person may ask of the /v1 API with a session or an access token (keys have
-- their own limits): enough for the dashboard and scripts, not for filling the disk.
ALTER TABLE plans ADD COLUMN user_requests_per_minute INTEGER NOT NULL DEFAULT 600;
ALTER TABLE plans ADD COLUMN user_requests_per_day INTEGER NOT NULL DEFAULT 100000;
-- When the rows of a failed or cancelled job were deleted (7 days after it ended); the job
-- itself stays, with its counts, until the 90-day purge.
ALTER TABLE verify_jobs ADD COLUMN rows_purged_at BIGINT;
