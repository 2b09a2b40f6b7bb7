-- Tenant isolation as defense in depth (docs/security.md#tenant-scoping). The app's queries run as mailroom_app (every
-- pooled connection does SET ROLE to it), which owns nothing, is no superuser and cannot
-- bypass row security; migrations run as the URL's own user, who owns the tables.
--
-- On tenant tables a row is visible only while the transaction says whose it is:
-- set_config('app.org_id', <org>, true). Three named cross-tenant paths, each keyed on a
-- secret or on the row's own identity, open exactly the rows they need: an API key found by
-- its lookup id before its organization is known, an invitation found by its token's hash by
-- someone of another organization, and the invitations to an address being erased (docs/security.md#account-deletion).

DO $$
BEGIN
    BEGIN
        CREATE ROLE mailroom_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    EXCEPTION WHEN OTHERS THEN
        -- Roles are the cluster's: another database's migration (perhaps racing this one)
        -- made it first. Anything else is a real failure.
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mailroom_app') THEN
            RAISE;
        END IF;
    END;
    -- The owner must be able to SET ROLE to it (a superuser already can).
    IF NOT pg_has_role(current_user, 'mailroom_app', 'MEMBER') THEN
        EXECUTE format('GRANT mailroom_app TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO mailroom_app', current_schema());
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO mailroom_app',
        current_schema()
    );
    -- Tables of later migrations too.
    EXECUTE format(
        'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO mailroom_app',
        current_schema()
    );
END
$$;

-- The migration bookkeeping is the owner's alone.
REVOKE ALL ON _sqlx_migrations FROM mailroom_app;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON api_keys
    USING (
        org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
        OR lookup_id = NULLIF(current_setting('app.api_key_lookup_id', true), '')
    )
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON invitations
    USING (
        org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
        OR encode(token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), '')
        OR email = NULLIF(current_setting('app.erase_email', true), '')
    )
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
        OR encode(token_hash, 'hex') = NULLIF(current_setting('app.invitation_token', true), ''));

ALTER TABLE usage_periods ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_periods FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_periods
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

ALTER TABLE usage_charges ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_charges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_charges
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
