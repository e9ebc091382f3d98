-- Control plane: account API keys, for machines acting as an account (a
-- Terraform provider, a deployment pipeline): such a key sees and manages
-- every tenant of its account, as a session token does, but never other
-- account keys. Only the SHA-256 of the key is kept; deleting the row is
-- what makes the key stop working.
-- Keep in step with migrations/sqlite/0009_account_api_keys.sql.

CREATE TABLE account_api_keys (
    id         UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    key_hash   BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX account_api_keys_by_account ON account_api_keys (account_id);
