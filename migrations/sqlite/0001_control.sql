-- Control plane, first part: accounts, tenants, tenant API keys, server secrets.
-- Keep in step with migrations/postgres/0001_control.sql (same tables, SQLite types).

CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE accounts (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    plan       TEXT NOT NULL,
    limits     TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX tenants_by_account ON tenants (account_id, created_at);

CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
