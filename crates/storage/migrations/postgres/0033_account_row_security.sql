-- Row-level security on users, organizations and memberships:
-- - a user's row is theirs (app.user_id); their organization's members see it
--   (app.org_id, read only); a sign-in, code or reset finds it by its address (app.email,
--   read only);
-- - an organization's row and memberships are the organization's (app.org_id); a user sees
--   their own membership (to learn their organization);
-- - the API key lookup reads the organization of the key it found, an invitation's token the
--   organization it invites to;
-- - platform administrators (mailroom_platform_admin, migration 0030) see and change all.
-- Whether an account was ever made is the platform's own record (installation), for the
-- one-time setup link: nobody counts every user's row.

CREATE TABLE installation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    has_accounts BOOLEAN NOT NULL
);
INSERT INTO installation (singleton, has_accounts)
    SELECT 1, EXISTS (SELECT 1 FROM users);
CREATE FUNCTION mailroom_note_first_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE installation SET has_accounts = TRUE WHERE singleton = 1 AND NOT has_accounts;
    RETURN NEW;
END
$$;
CREATE TRIGGER note_first_account AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION mailroom_note_first_account();

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON users
    USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY members ON users FOR SELECT
    USING (id IN (SELECT m.user_id FROM org_members m
                  WHERE m.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid));
CREATE POLICY address ON users FOR SELECT
    USING (email = NULLIF(current_setting('app.email', true), ''));
CREATE POLICY platform ON users
    USING (mailroom_platform_admin()) WITH CHECK (mailroom_platform_admin());

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orgs
    USING (id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY key_lookup ON orgs FOR SELECT
    USING (id IN (SELECT k.org_id FROM api_keys k
                  WHERE k.lookup_id = NULLIF(current_setting('app.api_key_lookup_id', true), '')));
CREATE POLICY invitation ON orgs FOR SELECT
    USING (id IN (SELECT i.org_id FROM invitations i
                  WHERE encode(i.token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), '')));
CREATE POLICY platform ON orgs
    USING (mailroom_platform_admin()) WITH CHECK (mailroom_platform_admin());

ALTER TABLE org_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON org_members
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY own ON org_members FOR SELECT
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY platform ON org_members
    USING (mailroom_platform_admin()) WITH CHECK (mailroom_platform_admin());
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON org_members
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
