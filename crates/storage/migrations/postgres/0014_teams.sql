-- Teams (docs/security.md#roles, #one-org-per-user, #invitations): plans, invitations, and disabling users.

-- What an organization may do. Operators may edit these rows or add plans; super-admins
-- assign them (PATCH /v1/admin/orgs/{id}).
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- A team subscription: members can be invited (docs/security.md#invitations).
    team BOOLEAN NOT NULL,
    member_limit INTEGER NOT NULL,
    verifications_per_month BIGINT NOT NULL,
    key_requests_per_minute INTEGER NOT NULL,
    key_requests_per_day INTEGER NOT NULL
);
INSERT INTO plans VALUES ('free', 'Free', FALSE, 1, 1000, 60, 10000);
INSERT INTO plans VALUES ('team', 'Team', TRUE, 50, 100000, 60, 10000);

-- No foreign key: SQLite cannot add one with a default. Plans are checked when assigned.
ALTER TABLE orgs ADD COLUMN plan_id TEXT NOT NULL DEFAULT 'free';

-- A disabled user cannot sign in, and their sessions and tokens stop working.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- Invitations (docs/security.md#invitations): the emailed token stored hashed; single-use, 7 days, revocable.
CREATE TABLE invitations (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    token_hash BYTEA NOT NULL UNIQUE,
    invited_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX invitations_by_org ON invitations (org_id, created_at);
