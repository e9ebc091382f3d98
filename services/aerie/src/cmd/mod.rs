//! The operator commands that act on the control plane: `migrate`, `token`,
//! `tenant`, `account`. Each opens the database directly (embedded shape: the data
//! dir's control.db, or --database-url) or, with --url, calls a running
//! control plane over HTTP (`remote`).

pub mod account;
pub mod migrate;
pub mod remote;
pub mod tenant;
pub mod token;

use std::sync::Arc;

use aerie_control::keys::Kek;
use aerie_control::store::ControlStore;
use anyhow::Context;
use serde_json::Value;

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

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One line per item of the array `items` under a header of `columns`
/// (upper-cased), each cell `cell(item, column)`, columns aligned.
pub fn table(items: &Value, columns: &[&str], cell: impl Fn(&Value, &str) -> String) -> String {
    let mut rows = vec![columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>()];
    for item in items.as_array().into_iter().flatten() {
        rows.push(columns.iter().map(|c| cell(item, c)).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}
