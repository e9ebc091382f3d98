-- Control plane, tokens: signing keys (private keys encrypted at rest), minted
-- tokens, revoked tokens. Keep in step with migrations/postgres/0002_tokens.sql.

CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY NOT NULL,   -- the JWT `kid`
    algorithm   TEXT NOT NULL,               -- `EdDSA`
    public_key  BLOB NOT NULL,               -- raw Ed25519 public key (32 bytes)
    private_key BLOB NOT NULL,               -- nonce || AES-256-GCM(PKCS#8), under the KEK
    created_at  TEXT NOT NULL,
    retired_at  TEXT
);

CREATE TABLE issued_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX issued_tokens_by_tenant ON issued_tokens (tenant_id, issued_at);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
