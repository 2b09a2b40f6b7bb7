-- An account's messages sent in the last minute and day, counted against its send limits.
CREATE INDEX emails_by_account ON emails (mail_account_id, sent_at);
