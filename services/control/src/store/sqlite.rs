//! SQLite: the embedded shape's database (`<data-dir>/control.db`).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{AppliedMigration, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://PATH?mode=rwc` (WAL, foreign keys on) and migrates it.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Ok(Self::open_migrated(url).await?.0)
    }

    /// As `open`, and says which migrations it applied.
    pub async fn open_migrated(url: &str) -> StoreResult<(Self, Vec<AppliedMigration>)> {
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let applied = super::migrate(&MIGRATOR, &pool).await?;
        Ok((SqliteStore { pool }, applied))
    }
}

super::sql_store!(SqliteStore, "BEGIN IMMEDIATE");
