-- The keyring (docs/security.md#master-key, #what-is-sealed, #data-key-rotation). Everything here is wrapped by the master key, which never touches
-- the database: only a check value of it does, so that the wrong key is recognized.
CREATE TABLE keyring (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    master_check BYTEA NOT NULL,
    -- The root key every MAC and signing key derives from.
    wrapped_root BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    master_rotated_at BIGINT
);

-- Data keys: per scope (an organization's id, or the nil UUID for the system scope), a
-- version per rotation. Old versions stay until nothing is sealed under them.
CREATE TABLE data_keys (
    scope UUID NOT NULL,
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, version)
);
