-- Failed sign-ins are counted per normalized address, whether or not an account has it, so
-- that an unknown address locks exactly like a known one (docs/security.md#lockout, #enumeration). The counters
-- leave the users table: they are about an address, not an account.
CREATE TABLE login_failures (
    email TEXT PRIMARY KEY,
    failed INTEGER NOT NULL DEFAULT 0,
    lockouts INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    updated_at BIGINT NOT NULL
);

INSERT INTO login_failures (email, failed, lockouts, locked_until, updated_at)
SELECT email, failed_logins, lockouts, locked_until,
       CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
FROM users
WHERE failed_logins > 0 OR lockouts > 0 OR locked_until IS NOT NULL;

ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN lockouts;
ALTER TABLE users DROP COLUMN locked_until;

-- The hourly purge of quiet, unlocked counters.
CREATE INDEX login_failures_updated ON login_failures (updated_at);
