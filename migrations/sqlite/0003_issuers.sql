-- Control plane, tenant JWT issuers: a tenant registers the issuer of its own
-- tokens and how to find its public keys (a JWKS URL, a JWKS, or one PEM key).
-- Keep in step with migrations/postgres/0003_issuers.sql.

CREATE TABLE issuers (
    id             BLOB PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    issuer         TEXT NOT NULL,                -- the `iss` claim, compared verbatim
    kind           TEXT NOT NULL,                -- jwks_url | jwks | public_key
    jwks_url       TEXT,
    jwks           TEXT,                         -- the JWK set as JSON text (public keys only)
    public_key_pem TEXT,                         -- a SubjectPublicKeyInfo PEM
    created_at     TEXT NOT NULL,
    UNIQUE (tenant_id, issuer),
    CHECK ((kind = 'jwks_url' AND jwks_url IS NOT NULL AND jwks IS NULL AND public_key_pem IS NULL)
        OR (kind = 'jwks' AND jwks_url IS NULL AND jwks IS NOT NULL AND public_key_pem IS NULL)
        OR (kind = 'public_key' AND jwks_url IS NULL AND jwks IS NULL AND public_key_pem IS NOT NULL))
);
