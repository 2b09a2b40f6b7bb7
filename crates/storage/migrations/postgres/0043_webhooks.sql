-- Webhooks (docs/security.md#webhooks): an organization's endpoints, each with its signing
-- secret sealed under the organization's data key (SEALED_COLUMNS); the events told to them,
-- metadata only (ids, addresses, statuses, a server's reply: never a message's content), kept
-- 30 days; and every attempt at delivering one to an endpoint.
CREATE TABLE webhook_endpoints (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- A JSON array of event types.
    events TEXT NOT NULL,
    secret BYTEA NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    -- Since when every delivery to it failed; none failed since its last success when NULL.
    failing_since BIGINT,
    created_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints (org_id, created_at);

CREATE TABLE webhook_events (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    -- The body every delivery of it sends, byte for byte.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_events_by_age ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    endpoint_id UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id UUID NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    delivered BOOLEAN NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, at);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_endpoints
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY reseal ON webhook_endpoints FOR SELECT
    USING ((SELECT mailroom_upkeep('app.reseal')));
CREATE POLICY reseal_update ON webhook_endpoints FOR UPDATE
    USING ((SELECT mailroom_upkeep('app.reseal')))
    WITH CHECK ((SELECT mailroom_upkeep('app.reseal')));
CREATE TRIGGER reseal_only BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION
    mailroom_upkeep_changes_only_or_unlinks('org_id', 'app.org_id', 'secret', 'created_by');
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');

ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_events
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
-- The hourly purge deletes events past their 30 days, whoever's they are (app.purge_before),
-- and their deliveries with them.
CREATE POLICY expiry ON webhook_events FOR DELETE
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 2592000000);
CREATE POLICY expiry_read ON webhook_events FOR SELECT
    USING (created_at < NULLIF(current_setting('app.purge_before', true), '')::bigint
           AND created_at < mailroom_now_ms() - 2592000000);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_deliveries
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER pin_org BEFORE UPDATE OF org_id ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('org_id');
