//! The token directory of the embedded shape: read in-process from the
//! control plane's store (signing keys, revoked tokens, tenant statuses).

use aerie_control::AppState;
use aerie_control::api::admin::STATUS_ACTIVE;
use aerie_control::store;
use aerie_gateway::auth::{Directory, DirectorySource, TenantStatus};
use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;

/// Loads a [`Directory`] from the control plane `aerie serve` runs.
pub struct ControlDirectory(pub AppState);

#[async_trait::async_trait]
impl DirectorySource for ControlDirectory {
    async fn load(&self) -> anyhow::Result<Directory> {
        let store = self.0.store();
        let now = store::now();
        let mut directory = Directory::default();
        let jwks = aerie_control::keys::jwks(store, now).await?;
        let set: JwkSet = serde_json::to_value(&jwks)
            .and_then(serde_json::from_value)
            .context("the JWKS does not parse as JWKs")?;
        directory.add_jwks(&set);
        directory.revoked_jtis = store
            .revoked_tokens_unexpired(now)
            .await?
            .into_iter()
            .map(|r| r.jti)
            .collect();
        directory.tenants = store
            .all_tenants()
            .await?
            .into_iter()
            .map(|t| {
                let status = if t.status == STATUS_ACTIVE {
                    TenantStatus::Active
                } else {
                    TenantStatus::Suspended
                };
                (t.id, status)
            })
            .collect();
        Ok(directory)
    }
}
