-- API keys: only a hash of each secret is stored (SHA-256, or HMAC-SHA-256
-- under a pepper kept outside the database), with a display prefix.
CREATE TABLE api_keys (
    id                   UUID PRIMARY KEY,
    owner                TEXT NOT NULL,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    hash                 BYTEA NOT NULL UNIQUE,
    -- The secret before the last regeneration, accepted until
    -- previous_valid_until when a grace period was asked for.
    previous_hash        BYTEA,
    previous_valid_until TIMESTAMPTZ,
    -- NULL: unrestricted within the owner's role.
    scopes               JSONB,
    is_active            BOOLEAN NOT NULL,
    expires_at           TIMESTAMPTZ,
    last_used            TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (owner, name)
);

CREATE INDEX api_keys_previous_hash ON api_keys (previous_hash)
    WHERE previous_hash IS NOT NULL;
