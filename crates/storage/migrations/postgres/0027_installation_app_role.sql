-- The app no longer runs as the cluster-wide role mailroom_app (migration 0017): roles are the
-- cluster's, so one role granted the tables of every installation on it, and each owner was
-- an inheriting member. Each installation now has a login role of its own, made and given its
-- tables outside the migrations (its name is configuration; see the storage crate's `roles`).
-- Here the shared role loses what it had on this database; it is left to exist for other
-- installations of older versions on the same cluster.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mailroom_app') THEN
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM mailroom_app', current_schema());
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM mailroom_app', current_schema());
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM mailroom_app', current_schema());
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM mailroom_app',
            current_schema()
        );
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM mailroom_app', current_database());
        IF EXISTS (
            SELECT 1 FROM pg_auth_members a
            JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
            WHERE r.rolname = 'mailroom_app' AND m.rolname = current_user
        ) THEN
            BEGIN
                REVOKE mailroom_app FROM CURRENT_USER;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'this owner is still a member of mailroom_app: a superuser can REVOKE mailroom_app FROM %', current_user;
            END;
        END IF;
    END IF;
END
$$;
