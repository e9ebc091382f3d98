-- Control plane, API key scopes and lineage: what a key may do, and which key
-- created it (NULL: an account session), so that revoking a key revokes the
-- keys it created. Keys created before this migration keep every scope.
-- Keep in step with migrations/postgres/0005_api_key_scopes.sql.

-- Scope names separated by spaces. The default only fills the existing rows
-- (SQLite cannot drop a default); every insert names its scopes.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL
    DEFAULT 'tokens clients messages usage issuers keys tenant';
ALTER TABLE api_keys ADD COLUMN created_by BLOB REFERENCES api_keys (id) ON DELETE CASCADE;
CREATE INDEX api_keys_by_creator ON api_keys (created_by);
