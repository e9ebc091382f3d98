-- Control plane, revocations by tenant: a tenant may revoke a jti of its own
-- issuers' tokens, which it chose itself, so the same jti in another tenant
-- must stay valid. The key becomes (tenant_id, jti). SQLite cannot change a
-- primary key: the table is rebuilt.
-- Keep in step with migrations/postgres/0006_revoked_tokens_by_tenant.sql.

CREATE TABLE revoked_tokens_by_tenant (
    tenant_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, jti)
);
INSERT INTO revoked_tokens_by_tenant (tenant_id, jti, expires_at, revoked_at)
    SELECT tenant_id, jti, expires_at, revoked_at FROM revoked_tokens;
DROP TABLE revoked_tokens;
ALTER TABLE revoked_tokens_by_tenant RENAME TO revoked_tokens;
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
