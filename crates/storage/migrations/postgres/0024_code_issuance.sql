-- How many codes went to an address within the hour that began at issued_since: a code whose
-- budget is spent (or that expired) is followed by a fresh one, at most CODES_PER_HOUR an hour.
ALTER TABLE email_codes ADD COLUMN issued INTEGER NOT NULL DEFAULT 1;
ALTER TABLE email_codes ADD COLUMN issued_since BIGINT NOT NULL DEFAULT 0;
