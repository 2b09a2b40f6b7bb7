-- Row-level security on data keys (wrapped under the master key): a scope's keys are visible
-- to a transaction acting for that scope (app.key_scope: an organization, or the nil UUID of
-- the system scope, whose keys seal every user's second-factor secret; a setting of its own,
-- so that acting for the system scope opens nothing else keyed by the nil UUID). The keyring's upkeep —
-- rotating each scope's key, re-wrapping every key under a new master key, listing them — is
-- the one path over all scopes.
ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY scope ON data_keys
    USING (scope = NULLIF(current_setting('app.key_scope', true), '')::uuid);
CREATE POLICY keyring ON data_keys
    USING (current_setting('app.keyring', true) = 'on');
