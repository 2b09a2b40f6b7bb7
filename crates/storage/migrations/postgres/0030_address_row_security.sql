-- Row-level security on what is kept about an address rather than an account (pending
-- sign-ups, emailed codes, failed sign-ins): each row is visible to a transaction about that
-- address (app.email) only. The named paths: the purge of counters quiet for 30 days (read and
-- deleted), and the platform's administrators, who see who is locked out.
--
-- Who administers the platform is the platform's own record (platform_admins, kept by a trigger
-- from users.platform_role): the administrators' path asks it, not a table under row policies.

CREATE TABLE platform_admins (
    user_id UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
);
INSERT INTO platform_admins (user_id) SELECT id FROM users WHERE platform_role = 'super_admin';

CREATE FUNCTION mailroom_keep_platform_admins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.platform_role = 'super_admin' THEN
        INSERT INTO platform_admins (user_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM platform_admins WHERE user_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER keep_platform_admins AFTER INSERT OR UPDATE OF platform_role ON users
    FOR EACH ROW EXECUTE FUNCTION mailroom_keep_platform_admins();

-- A transaction on the administrators' path: it names a platform administrator.
CREATE FUNCTION mailroom_platform_admin() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM platform_admins
        WHERE user_id = NULLIF(current_setting('app.platform_admin', true), '')::uuid
    )
$$;

ALTER TABLE pending_signups ENABLE ROW LEVEL SECURITY;
ALTER TABLE pending_signups FORCE ROW LEVEL SECURITY;
CREATE POLICY address ON pending_signups
    USING (email = NULLIF(current_setting('app.email', true), ''));

ALTER TABLE email_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY address ON email_codes
    USING (email = NULLIF(current_setting('app.email', true), ''));

ALTER TABLE login_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_failures FORCE ROW LEVEL SECURITY;
CREATE POLICY address ON login_failures
    USING (email = NULLIF(current_setting('app.email', true), ''));
CREATE POLICY quiet ON login_failures FOR SELECT
    USING (updated_at < NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND updated_at < mailroom_now_ms() - 2592000000
           AND (locked_until IS NULL OR locked_until <= mailroom_now_ms()));
CREATE POLICY quiet_delete ON login_failures FOR DELETE
    USING (updated_at < NULLIF(current_setting('app.expired_before', true), '')::bigint
           AND updated_at < mailroom_now_ms() - 2592000000
           AND (locked_until IS NULL OR locked_until <= mailroom_now_ms()));
CREATE POLICY platform ON login_failures FOR SELECT
    USING (mailroom_platform_admin());
