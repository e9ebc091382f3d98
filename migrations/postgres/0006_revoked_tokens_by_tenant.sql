-- Control plane, revocations by tenant: a tenant may revoke a jti of its own
-- issuers' tokens, which it chose itself, so the same jti in another tenant
-- must stay valid. The key becomes (tenant_id, jti).
-- Keep in step with migrations/sqlite/0006_revoked_tokens_by_tenant.sql.

ALTER TABLE revoked_tokens DROP CONSTRAINT revoked_tokens_pkey;
ALTER TABLE revoked_tokens ADD PRIMARY KEY (tenant_id, jti);
