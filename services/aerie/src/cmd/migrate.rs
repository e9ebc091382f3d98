//! `aerie migrate`: applies the control-plane migrations and says which.

use anyhow::Context;

use crate::cli::DbArgs;

pub async fn run(db: DbArgs) -> anyhow::Result<()> {
    if db.database_url.is_none() {
        std::fs::create_dir_all(&db.data_dir).with_context(|| {
            format!(
                "cannot create data dir {} (--data-dir)",
                db.data_dir.display()
            )
        })?;
    }
    let url = super::database_url(&db, "rwc");
    let shown = crate::serve::redact(&url);
    let (_, applied) = aerie_control::store::open_migrated(&url)
        .await
        .with_context(|| format!("cannot migrate the control-plane database {shown}"))?;
    if applied.is_empty() {
        println!("{shown}: up to date, nothing to apply");
    }
    for m in &applied {
        println!("{shown}: applied {:04} {}", m.version, m.description);
    }
    Ok(())
}
