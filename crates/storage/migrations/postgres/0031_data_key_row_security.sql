-- Row-level security on data keys (wrapped under the master key): a scope's keys are visible
-- to a transaction acting for that scope (app.org_id: an organization, or the nil UUID of the
-- system scope, whose keys seal every user's second-factor secret). The keyring's upkeep —
-- rotating each scope's key, re-wrapping every key under a new master key, listing them — is
-- the one path over all scopes.
ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY scope ON data_keys
    USING (scope = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY keyring ON data_keys
    USING (current_setting('app.keyring', true) = 'on');
