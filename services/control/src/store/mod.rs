//! Storage of the control plane: one trait, two sqlx implementations
//! (SQLite for the embedded shape, Postgres for the scale-out shape).
//!
//! Both run the same SQL text (`$n` placeholders work in both dialects),
//! generated once by [`sql_store!`]; only the migrations and the column types
//! differ. Runtime queries, no `query!` macros: no database at build time,
//! and the contract tests (tests/store_contract.rs) run against both for real.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::plan::Limits;
use crate::scopes::Scopes;

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (email, tenant id, key hash, …) is already taken.
    #[error("already exists")]
    Conflict,
    #[error("unsupported database url (expected postgres://… or sqlite://…)")]
    UnsupportedUrl,
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The current time at the precision both databases keep (microseconds), so
/// that what is read back equals what was written.
///
/// SQLite keeps times as RFC 3339 text with as few fraction digits as needed,
/// which does not sort or compare as time: ordering and time comparisons are
/// therefore done in Rust, never in SQL.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("a valid nanosecond")
}

/// A person who signs in with an email and a password.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    /// Normalised (trimmed, lowercase).
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tenant {
    pub id: String,
    pub account_id: Uuid,
    pub name: String,
    pub plan: String,
    #[sqlx(json)]
    pub limits: Limits,
    pub status: String,
    pub created_at: OffsetDateTime,
}

/// A tenant API key, without its secret: only the SHA-256 of the key is kept.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    /// What the key may do.
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    /// The key that created it; `None` if an account session did.
    pub created_by: Option<Uuid>,
}

/// An account API key, without its secret (only the SHA-256 of the key is
/// kept): a machine acting as the account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountApiKey {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// A signed-in session of an account (see migrations/*/0010_sessions.sql):
/// its token works while this row exists and `expires_at` is ahead.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub created_at: OffsetDateTime,
    /// Unix seconds (an integer in both databases, so expired rows can be
    /// purged in SQL).
    pub expires_at: i64,
}

/// A JWT signing key. The private key is only ever stored encrypted
/// (`nonce || AES-256-GCM(PKCS#8)` under the key-encryption key).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SigningKeyRow {
    /// The JWT `kid`.
    pub id: String,
    /// `EdDSA`.
    pub algorithm: String,
    /// The raw public key (32 bytes for Ed25519).
    pub public_key: Vec<u8>,
    /// The encrypted PKCS#8 document.
    pub private_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

/// A token the control plane minted (not the token itself: its `jti` and bounds).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssuedToken {
    pub jti: String,
    pub tenant_id: String,
    pub subject: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The API key that minted it (`None`: an account session, the CLI):
    /// revoking that key revokes it.
    pub minted_by: Option<Uuid>,
}

/// A revoked token: the gateways refuse its `jti` until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedToken {
    pub jti: String,
    pub tenant_id: String,
    pub expires_at: OffsetDateTime,
    pub revoked_at: OffsetDateTime,
}

/// A minted token as its tenant's list shows it: its bounds and whether it
/// is revoked (never the token itself, which is not kept).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenEntry {
    pub jti: String,
    pub subject: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

/// What one tenant's clients did in one UTC hour (connections, messages and
/// bytes in and out). The broker reports these; the control plane adds them up.
/// Serialized, it is a usage report row of a scale-out gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    pub tenant_id: String,
    /// The start of the UTC hour.
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub connection_seconds: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// The start of the UTC hour that contains `t`.
pub fn start_of_hour(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.replace_time(time::Time::from_hms(utc.hour(), 0, 0).expect("a valid hour"))
}

/// A JWT issuer a tenant registered: tokens whose `iss` is `issuer` are
/// verified with the keys found through exactly one of `jwks_url`, `jwks`
/// or `public_key_pem` (which one is `kind`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Issuer {
    pub id: Uuid,
    pub tenant_id: String,
    pub issuer: String,
    /// `jwks_url`, `jwks` or `public_key`.
    pub kind: String,
    pub jwks_url: Option<String>,
    /// The JWK set as JSON text, public keys only.
    pub jwks: Option<String>,
    /// A SubjectPublicKeyInfo PEM.
    pub public_key_pem: Option<String>,
    pub created_at: OffsetDateTime,
    /// The API key that registered it (`None`: an account session, the
    /// CLI): revoking that key removes it.
    pub created_by: Option<Uuid>,
}

/// Everything the control plane keeps. Handlers hold an `Arc<dyn ControlStore>`.
#[async_trait]
pub trait ControlStore: Send + Sync + std::fmt::Debug {
    /// Round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// The secret called `name`: `candidate` is stored if there is none yet,
    /// and whatever is stored (the first writer wins) is returned.
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;

    /// Fails with [`StoreError::Conflict`] if the email is taken.
    async fn insert_account(&self, account: &Account) -> StoreResult<()>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn account_by_id(&self, id: Uuid) -> StoreResult<Option<Account>>;

    /// Stores a new session, and purges the sessions (of any account) that
    /// expired at or before `now` (Unix seconds), so the table holds live
    /// sessions only.
    async fn insert_session(&self, session: &SessionRow, now: i64) -> StoreResult<()>;
    /// The session `id`, expired or not (the caller compares `expires_at`).
    async fn session(&self, id: Uuid) -> StoreResult<Option<SessionRow>>;
    /// Ends the session `id`: `false` if there is no such session.
    async fn delete_session(&self, id: Uuid) -> StoreResult<bool>;

    /// Fails with [`StoreError::Conflict`] if the id is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    /// The account's tenants, oldest first.
    async fn tenants_of(&self, account_id: Uuid) -> StoreResult<Vec<Tenant>>;
    /// `false` if there is no such tenant.
    async fn rename_tenant(&self, id: &str, name: &str) -> StoreResult<bool>;
    /// Deletes the tenant and its API keys; `false` if there is no such tenant.
    async fn delete_tenant(&self, id: &str) -> StoreResult<bool>;

    /// Fails with [`StoreError::Conflict`] if the id or the hash is taken.
    async fn insert_api_key(&self, key: &ApiKey, key_hash: &[u8]) -> StoreResult<()>;
    /// The tenant's keys that are not revoked, oldest first.
    async fn api_keys_of(&self, tenant_id: &str) -> StoreResult<Vec<ApiKey>>;
    /// The key that is not revoked and whose SHA-256 is `key_hash`.
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKey>>;
    /// Revokes the key and, transitively, every key it created, the tokens
    /// those keys minted and the issuers they registered (in one
    /// transaction); `false` if the tenant has no such key that is not
    /// revoked yet.
    async fn revoke_api_key(&self, tenant_id: &str, id: Uuid) -> StoreResult<bool>;

    /// Fails with [`StoreError::Conflict`] if the id or the hash is taken.
    async fn insert_account_api_key(&self, key: &AccountApiKey, key_hash: &[u8])
    -> StoreResult<()>;
    /// The account's API keys, oldest first.
    async fn account_api_keys_of(&self, account_id: Uuid) -> StoreResult<Vec<AccountApiKey>>;
    /// The account API key whose SHA-256 is `key_hash`.
    async fn account_api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<AccountApiKey>>;
    /// Deletes the account's key `id`: `false` if the account has no such key.
    async fn delete_account_api_key(&self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;

    /// Stores a new signing key. Fails with [`StoreError::Conflict`] if the id is taken.
    async fn insert_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()>;
    /// The newest key that is not retired.
    async fn active_signing_key(&self) -> StoreResult<Option<SigningKeyRow>>;
    /// Keys not retired, or retired after `retired_after`, oldest first.
    async fn signing_keys_since(
        &self,
        retired_after: OffsetDateTime,
    ) -> StoreResult<Vec<SigningKeyRow>>;
    /// In one transaction: every active key gets `retired_at = new.created_at`,
    /// and `new` is stored as the active key.
    async fn rotate_signing_key(&self, new: &SigningKeyRow) -> StoreResult<()>;

    async fn insert_issued_token(&self, token: &IssuedToken) -> StoreResult<()>;
    /// Revokes the tenant's token `jti` at `now`, until the token expires if
    /// the tenant minted it here, else until `foreign_until` (a jti of the
    /// tenant's own issuers, whose expiry is unknown here): `false` if neither
    /// applies or the tenant revoked this jti already.
    async fn revoke_token(
        &self,
        tenant_id: &str,
        jti: &str,
        now: OffsetDateTime,
        foreign_until: Option<OffsetDateTime>,
    ) -> StoreResult<bool>;
    /// The tenant's revocation of `jti`, if any.
    async fn revoked_token(&self, tenant_id: &str, jti: &str) -> StoreResult<Option<RevokedToken>>;
    /// The tenant's minted token `jti`, with whether it is revoked.
    async fn token(&self, tenant_id: &str, jti: &str) -> StoreResult<Option<TokenEntry>>;
    /// The tenant's minted tokens, newest first (then by `jti`), at most `limit`.
    async fn tokens_of(&self, tenant_id: &str, limit: usize) -> StoreResult<Vec<TokenEntry>>;

    /// Adds each row's counters to what is stored for its tenant and hour (in
    /// one transaction); `hour` is taken to the start of its UTC hour first.
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()>;
    /// As [`ControlStore::add_usage`], once per report: `sequence` is the
    /// report's place in `stream`, and a report at or below the last one
    /// folded from that stream adds nothing. Says whether it added `rows`.
    async fn add_usage_report(
        &self,
        stream: &str,
        sequence: i64,
        rows: &[UsageRow],
    ) -> StoreResult<bool>;
    /// The tenant's hours that start in `[from, to)`, oldest first.
    async fn usage(
        &self,
        tenant_id: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<UsageRow>>;
    /// Fails with [`StoreError::Conflict`] if the tenant has this issuer already.
    async fn insert_issuer(&self, issuer: &Issuer) -> StoreResult<()>;
    /// The tenant's issuers, oldest first.
    async fn issuers_of(&self, tenant_id: &str) -> StoreResult<Vec<Issuer>>;
    /// `false` if the tenant has no such issuer.
    async fn delete_issuer(&self, tenant_id: &str, id: Uuid) -> StoreResult<bool>;
    /// Every tenant's issuers, by tenant then oldest first (what a gateway loads).
    async fn all_issuers(&self) -> StoreResult<Vec<Issuer>>;
    /// Replaces the tenant's limits; `false` if there is no such tenant.
    async fn set_tenant_limits(&self, id: &str, limits: &Limits) -> StoreResult<bool>;
    /// Every tenant of every account, oldest first (operators only).
    async fn all_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Sets the tenant's status (`active`, `suspended`); `false` if there is no such tenant.
    async fn set_tenant_status(&self, id: &str, status: &str) -> StoreResult<bool>;
    /// Every revoked token that expires after `now` (what gateways must refuse).
    async fn revoked_tokens_unexpired(&self, now: OffsetDateTime)
    -> StoreResult<Vec<RevokedToken>>;
}

/// A migration that [`open_migrated`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// sqlx's bookkeeping table (its default name).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Applies `migrator`'s pending migrations on `pool` and says which.
async fn migrate<DB>(
    migrator: &sqlx::migrate::Migrator,
    pool: &sqlx::Pool<DB>,
) -> StoreResult<Vec<AppliedMigration>>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate;
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let before: std::collections::HashSet<i64> = conn
        .list_applied_migrations(MIGRATIONS_TABLE)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    migrator.run_direct(None, &mut *conn, false).await?;
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !before.contains(&m.version))
        .map(|m| AppliedMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect())
}

/// Opens the database named by `url` and applies its migrations:
/// `postgres://…` (or `postgresql://…`) or `sqlite://PATH?mode=rwc`.
pub async fn open(url: &str) -> StoreResult<Arc<dyn ControlStore>> {
    let (store, applied) = open_migrated(url).await?;
    for m in applied {
        tracing::info!(version = m.version, description = %m.description, "migration applied");
    }
    Ok(store)
}

/// As [`open`], and says which migrations it applied (none: up to date).
pub async fn open_migrated(
    url: &str,
) -> StoreResult<(Arc<dyn ControlStore>, Vec<AppliedMigration>)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, applied) = PostgresStore::open_migrated(url).await?;
        Ok((Arc::new(store), applied))
    } else if url.starts_with("sqlite:") {
        let (store, applied) = SqliteStore::open_migrated(url).await?;
        Ok((Arc::new(store), applied))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Implements [`ControlStore`] for a struct with a `pool: sqlx::Pool<DB>`.
/// The SQL is shared by both dialects; keep it to what both understand.
/// The API key `$1` of tenant `$2` if it is not revoked, and every key it
/// created, transitively: what revoking `$1` revokes (see `revoke_api_key`).
/// A macro, for `concat!`: sqlx takes only static SQL.
macro_rules! doomed_keys {
    () => {
        "WITH RECURSIVE doomed (id) AS ( \
           SELECT id FROM api_keys \
           WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL \
           UNION \
           SELECT k.id FROM api_keys k JOIN doomed d ON k.created_by = d.id \
         ) "
    };
}
pub(crate) use doomed_keys;

/// The tenant `$1`'s minted tokens as [`TokenEntry`]s (with whether each is
/// revoked), for `token` and `tokens_of` to narrow. A macro, for `concat!`.
macro_rules! token_entries {
    () => {
        "SELECT i.jti, i.subject, i.issued_at, i.expires_at, \
         r.jti IS NOT NULL AS revoked \
         FROM issued_tokens i LEFT JOIN revoked_tokens r \
         ON r.jti = i.jti AND r.tenant_id = i.tenant_id \
         WHERE i.tenant_id = $1"
    };
}
pub(crate) use token_entries;

/// `$begin` starts a transaction: SQLite's must take the write lock at
/// once (`BEGIN IMMEDIATE`), since these transactions read, then write: a
/// deferred one that read before another connection wrote cannot upgrade,
/// and fails with "database is locked" without waiting (the busy timeout
/// does not apply to that case).
macro_rules! sql_store {
    ($store:ty, $begin:literal) => {
        impl $store {
            /// Adds `rows` to the usage table in one transaction; with a
            /// report's (stream, sequence), only if that stream has not had
            /// it folded yet, recording it in the same transaction.
            async fn fold_usage(
                &self,
                report: Option<(&str, i64)>,
                rows: &[$crate::store::UsageRow],
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                if let Some((stream, sequence)) = report {
                    let last: Option<(i64,)> =
                        sqlx::query_as("SELECT last_sequence FROM usage_reports WHERE stream = $1")
                            .bind(stream)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if last.is_some_and(|(last,)| last >= sequence) {
                        return Ok(false);
                    }
                    sqlx::query(
                        "INSERT INTO usage_reports (stream, last_sequence) VALUES ($1, $2) \
                         ON CONFLICT (stream) DO UPDATE SET last_sequence = excluded.last_sequence",
                    )
                    .bind(stream)
                    .bind(sequence)
                    .execute(&mut *tx)
                    .await?;
                }
                for r in rows {
                    sqlx::query(
                        "INSERT INTO usage (tenant_id, hour, connection_seconds, messages_in, \
                         messages_out, bytes_in, bytes_out) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (tenant_id, hour) DO UPDATE SET \
                         connection_seconds = usage.connection_seconds + excluded.connection_seconds, \
                         messages_in = usage.messages_in + excluded.messages_in, \
                         messages_out = usage.messages_out + excluded.messages_out, \
                         bytes_in = usage.bytes_in + excluded.bytes_in, \
                         bytes_out = usage.bytes_out + excluded.bytes_out",
                    )
                    .bind(&r.tenant_id)
                    .bind($crate::store::start_of_hour(r.hour))
                    .bind(r.connection_seconds)
                    .bind(r.messages_in)
                    .bind(r.messages_out)
                    .bind(r.bytes_in)
                    .bind(r.bytes_out)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ControlStore for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn secret_or_insert(
                &self,
                name: &str,
                candidate: &[u8],
            ) -> $crate::store::StoreResult<Vec<u8>> {
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate)
                .bind($crate::store::now())
                .execute(&self.pool)
                .await?;
                let (value,): (Vec<u8>,) =
                    sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(value)
            }

            async fn insert_account(
                &self,
                a: &$crate::store::Account,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO accounts (id, email, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(a.id)
                .bind(&a.email)
                .bind(&a.password_hash)
                .bind(a.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn account_by_email(
                &self,
                email: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Account>> {
                Ok(sqlx::query_as(
                    "SELECT id, email, password_hash, created_at FROM accounts WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn account_by_id(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::Account>> {
                Ok(sqlx::query_as(
                    "SELECT id, email, password_hash, created_at FROM accounts WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn insert_session(
                &self,
                s: &$crate::store::SessionRow,
                now: i64,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sessions (id, account_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(s.id)
                .bind(s.account_id)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::SessionRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, created_at, expires_at FROM sessions WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn delete_session(&self, id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_tenant(
                &self,
                t: &$crate::store::Tenant,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO tenants (id, account_id, name, plan, limits, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.id)
                .bind(t.account_id)
                .bind(&t.name)
                .bind(&t.plan)
                .bind(sqlx::types::Json(&t.limits))
                .bind(&t.status)
                .bind(t.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn tenant(
                &self,
                id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Tenant>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, name, plan, limits, status, created_at \
                     FROM tenants WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn tenants_of(
                &self,
                account_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Tenant>> {
                let mut tenants: Vec<$crate::store::Tenant> = sqlx::query_as(
                    "SELECT id, account_id, name, plan, limits, status, created_at \
                     FROM tenants WHERE account_id = $1",
                )
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?;
                tenants.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(tenants)
            }

            async fn rename_tenant(
                &self,
                id: &str,
                name: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_tenant(&self, id: &str) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM issued_tokens WHERE tenant_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_api_key(
                &self,
                k: &$crate::store::ApiKey,
                key_hash: &[u8],
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys \
                     (id, tenant_id, name, key_hash, created_at, scopes, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(k.id)
                .bind(&k.tenant_id)
                .bind(&k.name)
                .bind(key_hash)
                .bind(k.created_at)
                .bind(k.scopes.to_string())
                .bind(k.created_by)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn api_keys_of(
                &self,
                tenant_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKey>> {
                let mut keys: Vec<$crate::store::ApiKey> = sqlx::query_as(
                    "SELECT id, tenant_id, name, created_at, scopes, created_by FROM api_keys \
                     WHERE tenant_id = $1 AND revoked_at IS NULL",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                keys.sort_by(|a, b| (a.created_at, a.id).cmp(&(b.created_at, b.id)));
                Ok(keys)
            }

            async fn api_key_by_hash(
                &self,
                key_hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKey>> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, name, created_at, scopes, created_by FROM api_keys \
                     WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_api_key(
                &self,
                tenant_id: &str,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                // The key, then whatever it created, and so on: a leaked key
                // cannot outlive its revocation through keys it made, tokens
                // it minted or issuers it registered.
                let now = $crate::store::now();
                let mut tx = self.pool.begin_with($begin).await?;
                // Tokens and issuers first: the key is not revoked yet, so
                // `doomed` still finds it.
                sqlx::query(concat!(
                    $crate::store::doomed_keys!(),
                    "INSERT INTO revoked_tokens (jti, tenant_id, expires_at, revoked_at) \
                     SELECT t.jti, t.tenant_id, t.expires_at, $3 FROM issued_tokens t \
                     WHERE t.tenant_id = $2 AND t.minted_by IN (SELECT id FROM doomed) \
                     ON CONFLICT (tenant_id, jti) DO NOTHING"
                ))
                .bind(id)
                .bind(tenant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(concat!(
                    $crate::store::doomed_keys!(),
                    "DELETE FROM issuers \
                     WHERE tenant_id = $2 AND created_by IN (SELECT id FROM doomed)"
                ))
                .bind(id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query(concat!(
                    $crate::store::doomed_keys!(),
                    "UPDATE api_keys SET revoked_at = $3 \
                     WHERE id IN (SELECT id FROM doomed) AND revoked_at IS NULL"
                ))
                .bind(id)
                .bind(tenant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                // The key itself is among them exactly when it was not revoked.
                Ok(done.rows_affected() >= 1)
            }

            async fn insert_account_api_key(
                &self,
                k: &$crate::store::AccountApiKey,
                key_hash: &[u8],
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO account_api_keys (id, account_id, name, key_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(k.id)
                .bind(k.account_id)
                .bind(&k.name)
                .bind(key_hash)
                .bind(k.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn account_api_keys_of(
                &self,
                account_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AccountApiKey>> {
                let mut keys: Vec<$crate::store::AccountApiKey> = sqlx::query_as(
                    "SELECT id, account_id, name, created_at FROM account_api_keys \
                     WHERE account_id = $1",
                )
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?;
                keys.sort_by(|a, b| (a.created_at, a.id).cmp(&(b.created_at, b.id)));
                Ok(keys)
            }

            async fn account_api_key_by_hash(
                &self,
                key_hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::AccountApiKey>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, name, created_at FROM account_api_keys \
                     WHERE key_hash = $1",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn delete_account_api_key(
                &self,
                account_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                let done =
                    sqlx::query("DELETE FROM account_api_keys WHERE id = $1 AND account_id = $2")
                        .bind(id)
                        .bind(account_id)
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_signing_key(
                &self,
                k: &$crate::store::SigningKeyRow,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys \
                     (id, algorithm, public_key, private_key, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&k.id)
                .bind(&k.algorithm)
                .bind(&k.public_key)
                .bind(&k.private_key)
                .bind(k.created_at)
                .bind(k.retired_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn active_signing_key(
                &self,
            ) -> $crate::store::StoreResult<Option<$crate::store::SigningKeyRow>> {
                let active: Vec<$crate::store::SigningKeyRow> = sqlx::query_as(
                    "SELECT id, algorithm, public_key, private_key, created_at, retired_at \
                     FROM signing_keys WHERE retired_at IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(active
                    .into_iter()
                    .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id))))
            }

            async fn signing_keys_since(
                &self,
                retired_after: time::OffsetDateTime,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyRow>> {
                let mut keys: Vec<$crate::store::SigningKeyRow> = sqlx::query_as(
                    "SELECT id, algorithm, public_key, private_key, created_at, retired_at \
                     FROM signing_keys",
                )
                .fetch_all(&self.pool)
                .await?;
                keys.retain(|k| k.retired_at.is_none_or(|at| at > retired_after));
                keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(keys)
            }

            async fn rotate_signing_key(
                &self,
                k: &$crate::store::SigningKeyRow,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(k.created_at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO signing_keys \
                     (id, algorithm, public_key, private_key, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .bind(&k.id)
                .bind(&k.algorithm)
                .bind(&k.public_key)
                .bind(&k.private_key)
                .bind(k.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_issued_token(
                &self,
                t: &$crate::store::IssuedToken,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO issued_tokens \
                     (jti, tenant_id, subject, issued_at, expires_at, minted_by) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.jti)
                .bind(&t.tenant_id)
                .bind(&t.subject)
                .bind(t.issued_at)
                .bind(t.expires_at)
                .bind(t.minted_by)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn revoke_token(
                &self,
                tenant_id: &str,
                jti: &str,
                now: time::OffsetDateTime,
                foreign_until: Option<time::OffsetDateTime>,
            ) -> $crate::store::StoreResult<bool> {
                // One statement, not a read then a write in a transaction:
                // SQLite refuses at once (SQLITE_BUSY, "database is locked")
                // to turn a reader into a writer while another connection
                // writes, and Terraform revokes ten tokens at once. Kept until
                // the token expires if it was minted here, else until
                // `foreign_until`; no row at all if neither is known.
                let done = sqlx::query(
                    "INSERT INTO revoked_tokens (jti, tenant_id, expires_at, revoked_at) \
                     SELECT $1, $2, kept.expires_at, $3 FROM (SELECT COALESCE( \
                       (SELECT expires_at FROM issued_tokens WHERE jti = $1 AND tenant_id = $2), \
                       $4) AS expires_at) AS kept \
                     WHERE kept.expires_at IS NOT NULL \
                     ON CONFLICT (tenant_id, jti) DO NOTHING",
                )
                .bind(jti)
                .bind(tenant_id)
                .bind(now)
                .bind(foreign_until)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoked_token(
                &self,
                tenant_id: &str,
                jti: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::RevokedToken>> {
                Ok(sqlx::query_as(
                    "SELECT jti, tenant_id, expires_at, revoked_at FROM revoked_tokens \
                     WHERE jti = $1 AND tenant_id = $2",
                )
                .bind(jti)
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn token(
                &self,
                tenant_id: &str,
                jti: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::TokenEntry>> {
                Ok(sqlx::query_as(
                    concat!($crate::store::token_entries!(), " AND i.jti = $2"),
                )
                .bind(tenant_id)
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn tokens_of(
                &self,
                tenant_id: &str,
                limit: usize,
            ) -> $crate::store::StoreResult<Vec<$crate::store::TokenEntry>> {
                // Newest first, ordered here: SQLite's times do not sort as times.
                let mut tokens: Vec<$crate::store::TokenEntry> = sqlx::query_as(
                    $crate::store::token_entries!(),
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                tokens.sort_by(|a, b| (b.issued_at, &b.jti).cmp(&(a.issued_at, &a.jti)));
                tokens.truncate(limit);
                Ok(tokens)
            }

            async fn add_usage(
                &self,
                rows: &[$crate::store::UsageRow],
            ) -> $crate::store::StoreResult<()> {
                self.fold_usage(None, rows).await.map(|_| ())
            }

            async fn add_usage_report(
                &self,
                stream: &str,
                sequence: i64,
                rows: &[$crate::store::UsageRow],
            ) -> $crate::store::StoreResult<bool> {
                self.fold_usage(Some((stream, sequence)), rows).await
            }

            async fn usage(
                &self,
                tenant_id: &str,
                from: time::OffsetDateTime,
                to: time::OffsetDateTime,
            ) -> $crate::store::StoreResult<Vec<$crate::store::UsageRow>> {
                let mut rows: Vec<$crate::store::UsageRow> = sqlx::query_as(
                    "SELECT tenant_id, hour, connection_seconds, messages_in, messages_out, \
                     bytes_in, bytes_out FROM usage WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                rows.retain(|r| r.hour >= from && r.hour < to);
                rows.sort_by_key(|r| r.hour);
                Ok(rows)
            }

            async fn insert_issuer(
                &self,
                i: &$crate::store::Issuer,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO issuers \
                     (id, tenant_id, issuer, kind, jwks_url, jwks, public_key_pem, created_at, \
                      created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(i.id)
                .bind(&i.tenant_id)
                .bind(&i.issuer)
                .bind(&i.kind)
                .bind(&i.jwks_url)
                .bind(&i.jwks)
                .bind(&i.public_key_pem)
                .bind(i.created_at)
                .bind(i.created_by)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn issuers_of(
                &self,
                tenant_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Issuer>> {
                let mut issuers: Vec<$crate::store::Issuer> = sqlx::query_as(
                    "SELECT id, tenant_id, issuer, kind, jwks_url, jwks, public_key_pem, created_at, \
                     created_by FROM issuers WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                issuers.sort_by(|a, b| (a.created_at, a.id).cmp(&(b.created_at, b.id)));
                Ok(issuers)
            }

            async fn delete_issuer(
                &self,
                tenant_id: &str,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM issuers WHERE id = $1 AND tenant_id = $2")
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn all_issuers(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Issuer>> {
                let mut issuers: Vec<$crate::store::Issuer> = sqlx::query_as(
                    "SELECT id, tenant_id, issuer, kind, jwks_url, jwks, public_key_pem, created_at, \
                     created_by FROM issuers",
                )
                .fetch_all(&self.pool)
                .await?;
                issuers.sort_by(|a, b| {
                    (&a.tenant_id, a.created_at, a.id).cmp(&(&b.tenant_id, b.created_at, b.id))
                });
                Ok(issuers)
            }

            async fn set_tenant_limits(
                &self,
                id: &str,
                limits: &$crate::plan::Limits,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE tenants SET limits = $1 WHERE id = $2")
                    .bind(sqlx::types::Json(limits))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn all_tenants(&self) -> $crate::store::StoreResult<Vec<$crate::store::Tenant>> {
                let mut tenants: Vec<$crate::store::Tenant> = sqlx::query_as(
                    "SELECT id, account_id, name, plan, limits, status, created_at FROM tenants",
                )
                .fetch_all(&self.pool)
                .await?;
                tenants.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(tenants)
            }

            async fn set_tenant_status(
                &self,
                id: &str,
                status: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE tenants SET status = $1 WHERE id = $2")
                    .bind(status)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoked_tokens_unexpired(
                &self,
                now: time::OffsetDateTime,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RevokedToken>> {
                let rows: Vec<$crate::store::RevokedToken> = sqlx::query_as(
                    "SELECT jti, tenant_id, expires_at, revoked_at FROM revoked_tokens",
                )
                .fetch_all(&self.pool)
                .await?;
                // Compared in Rust: SQLite keeps times as text.
                Ok(rows.into_iter().filter(|r| r.expires_at > now).collect())
            }
        }
    };
}
pub(crate) use sql_store;
