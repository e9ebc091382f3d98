//! Postgres: the scale-out shape's database (`--database-url postgres://…`).

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{AppliedMigration, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Ok(Self::open_migrated(url).await?.0)
    }

    /// As `open`, and says which migrations it applied.
    pub async fn open_migrated(url: &str) -> StoreResult<(Self, Vec<AppliedMigration>)> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        let applied = super::migrate(&MIGRATOR, &pool).await?;
        Ok((PostgresStore { pool }, applied))
    }
}

super::sql_store!(PostgresStore, "BEGIN");
