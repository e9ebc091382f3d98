-- Control plane: account sessions (console log-ins and `POST /v1/sessions`).
-- A session token (or the console's cookie carrying it) is signed, and works
-- only while its row is here and has not expired: logging out deletes the
-- row, so the token and the cookie stop working at once. `expires_at` is
-- Unix seconds, so both databases can compare it in SQL when expired rows are
-- purged.
-- Keep in step with migrations/sqlite/0010_sessions.sql.

CREATE TABLE sessions (
    id         UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
