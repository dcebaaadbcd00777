-- API keys: only a hash of each secret is stored (SHA-256, or HMAC-SHA-256
-- under a pepper kept outside the database), with a display prefix.
CREATE TABLE api_keys (
    id                   BLOB PRIMARY KEY NOT NULL,
    owner                TEXT NOT NULL,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    hash                 BLOB NOT NULL UNIQUE,
    -- The secret before the last regeneration, accepted until
    -- previous_valid_until when a grace period was asked for.
    previous_hash        BLOB,
    previous_valid_until TEXT,
    -- NULL: unrestricted within the owner's role. JSON array otherwise.
    scopes               TEXT,
    is_active            INTEGER NOT NULL,
    expires_at           TEXT,
    last_used            TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    UNIQUE (owner, name)
);

CREATE INDEX api_keys_previous_hash ON api_keys (previous_hash)
    WHERE previous_hash IS NOT NULL;
