-- Control plane: which API key minted a token and which registered an
-- issuer (NULL: an account session or the CLI), so that revoking a key
-- revokes the tokens it minted and removes the issuers it registered, as it
-- revokes the keys it created: a leaked key outlives its revocation through
-- none of them.
-- Keep in step with migrations/postgres/0008_created_by.sql.

ALTER TABLE issued_tokens ADD COLUMN minted_by BLOB;
CREATE INDEX issued_tokens_by_minter ON issued_tokens (minted_by);
ALTER TABLE issuers ADD COLUMN created_by BLOB;
CREATE INDEX issuers_by_creator ON issuers (created_by);
