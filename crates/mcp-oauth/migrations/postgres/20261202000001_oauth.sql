-- The authorization server's state. Times are microseconds since the epoch
-- (the same on both databases); secrets only as SHA-256.
CREATE TABLE oauth_clients (
    id            TEXT PRIMARY KEY,
    secret_hash   BYTEA,
    name          TEXT,
    redirect_uris TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE oauth_codes (
    hash         BYTEA PRIMARY KEY,
    client_id    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge    TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grant_id     UUID NOT NULL,
    expires_at   BIGINT NOT NULL,
    uses         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE oauth_grants (
    id          UUID PRIMARY KEY,
    client_id   TEXT NOT NULL,
    client_name TEXT,
    subject     TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX oauth_grants_subject ON oauth_grants (subject, created_at);

CREATE TABLE oauth_refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    grant_id   UUID NOT NULL,
    expires_at BIGINT NOT NULL,
    uses       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);
