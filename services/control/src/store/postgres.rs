//! Postgres: the scale-out shape's database (`--database-url postgres://…`).

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await?;
        Ok(PostgresStore { pool })
    }
}

super::sql_store!(PostgresStore);
