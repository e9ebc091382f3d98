//! The operator commands that act on the control plane: `migrate`, `token`,
//! `tenant`. Each opens the database directly (embedded shape: the data
//! dir's control.db, or --database-url) or, with --url, calls a running
//! control plane over HTTP (`remote`).

pub mod migrate;
pub mod remote;
pub mod tenant;
pub mod token;

use std::sync::Arc;

use aerie_control::keys::Kek;
use aerie_control::store::ControlStore;
use anyhow::Context;

use crate::cli::{DbArgs, SecretKeyArgs, embedded_control_db};

/// The URL of the control-plane database; `mode` `rw` (must exist) or `rwc`.
pub fn database_url(db: &DbArgs, mode: &str) -> String {
    db.database_url
        .clone()
        .unwrap_or_else(|| embedded_control_db(&db.data_dir, mode))
}

/// Opens an existing control-plane database (applying pending migrations).
pub async fn open_store(db: &DbArgs) -> anyhow::Result<Arc<dyn ControlStore>> {
    let url = database_url(db, "rw");
    aerie_control::store::open(&url).await.with_context(|| {
        format!(
            "cannot open the control-plane database {}",
            crate::serve::redact(&url)
        )
    })
}

/// The secret key of an existing database: from the flags, else
/// `<data-dir>/secret.key` if it exists. Never generated here: a new key
/// would not open the stored signing keys.
pub fn existing_secret_key(db: &DbArgs, secret: &SecretKeyArgs) -> anyhow::Result<Kek> {
    let default_file = db.data_dir.join("secret.key");
    let default_file = default_file.exists().then_some(default_file);
    secret.resolve(default_file.as_deref())
}
