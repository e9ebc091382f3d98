-- Control plane, first part: accounts, tenants, tenant API keys, server secrets.
-- Keep in step with migrations/sqlite/0001_control.sql (same tables, Postgres types).

CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE accounts (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    plan       TEXT NOT NULL,
    limits     JSONB NOT NULL,
    status     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tenants_by_account ON tenants (account_id, created_at);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    key_hash   BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
