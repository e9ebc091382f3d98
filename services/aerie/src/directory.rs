//! The token directory of the embedded shape: read in-process from the
//! control plane's store (signing keys, revoked tokens, tenant statuses,
//! tenants' issuers). The keys of issuers registered by JWKS URL come from
//! [`JwksUrls`], which fetches each on its own schedule: a load never waits
//! on a tenant's server.

use aerie_control::AppState;
use aerie_control::api::admin::STATUS_ACTIVE;
use aerie_control::plan::Limits;
use aerie_control::store;

use aerie_gateway::auth::{
    Directory, DirectorySource, TenantFacts, TenantIssuer, TenantLimits, TenantStatus,
};
use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;

use crate::jwks_urls::JwksUrls;

/// Loads a [`Directory`] from the control plane `aerie serve` runs.
pub struct ControlDirectory {
    control: AppState,
    jwks_urls: JwksUrls,
}

impl ControlDirectory {
    pub fn new(control: AppState, egress: aerie_egress::Egress) -> ControlDirectory {
        ControlDirectory {
            control,
            jwks_urls: JwksUrls::new(egress),
        }
    }
}

#[async_trait::async_trait]
impl DirectorySource for ControlDirectory {
    async fn load(&self) -> anyhow::Result<Directory> {
        let store = self.control.store();
        let now = store::now();
        let mut directory = Directory::default();
        let jwks = aerie_control::keys::jwks(store, now).await?;
        let set: JwkSet = serde_json::to_value(&jwks)
            .and_then(serde_json::from_value)
            .context("the JWKS does not parse as JWKs")?;
        directory.add_jwks(&set);
        for revoked in store.revoked_tokens_unexpired(now).await? {
            directory.revoke(&revoked.tenant_id, &revoked.jti);
        }
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
                let limits = tenant_limits(&t.limits);
                (t.id, TenantFacts { status, limits })
            })
            .collect();
        let issuers = store.all_issuers().await?;
        self.jwks_urls.track(issuers.iter().filter_map(|i| {
            let url = i.jwks_url.as_deref()?;
            Some((i.tenant_id.as_str(), i.issuer.as_str(), url))
        }));
        for issuer in issuers {
            let loaded = match (&issuer.jwks_url, &issuer.jwks, &issuer.public_key_pem) {
                (Some(_), _, _) => match self.jwks_urls.keys(&issuer.tenant_id, &issuer.issuer) {
                    Some(keys) => Ok(keys),
                    // Not fetched yet (its task has just started), or never
                    // successfully: its tokens wait for a load that has keys.
                    None => continue,
                },
                (None, Some(jwks), _) => serde_json::from_str::<JwkSet>(jwks)
                    .map(|set| TenantIssuer::from_jwks(&issuer.issuer, &set))
                    .context("the stored JWKS does not parse"),
                (None, None, Some(pem)) => TenantIssuer::from_pem(&issuer.issuer, pem.as_bytes()),
                (None, None, None) => Err(anyhow::anyhow!("no key source")),
            };
            match loaded {
                Ok(loaded) => directory
                    .issuers
                    .entry(issuer.tenant_id)
                    .or_default()
                    .push(loaded),
                // One tenant's broken issuer must not stop everyone's directory.
                Err(e) => {
                    tracing::warn!(tenant = %issuer.tenant_id, issuer = %issuer.issuer, error = %e, "skipping a tenant issuer")
                }
            }
        }
        Ok(directory)
    }

    /// A token named a `kid` this issuer lacks: fetch its JWKS URL now (the
    /// cache allows this at most every few seconds per issuer).
    async fn refresh_issuer(&self, tenant: &str, issuer: &str) {
        self.jwks_urls.refresh(tenant, issuer).await;
    }
}

/// The control plane's plan limits as the gateway enforces them.
pub fn tenant_limits(l: &Limits) -> TenantLimits {
    TenantLimits {
        connections: l.connections,
        connect_rate: l.connect_rate,
        publish_rate_msgs: l.publish_rate_msgs,
        publish_rate_bytes: l.publish_rate_bytes,
        client_publish_rate_msgs: l.client_publish_rate_msgs,
        client_publish_rate_bytes: l.client_publish_rate_bytes,
        max_packet_size: l.max_packet_size,
        subscriptions_per_client: l.subscriptions_per_client,
        retained_messages: l.retained_messages,
        retained_bytes: l.retained_bytes,
        session_expiry_max: l.session_expiry_max,
        queued_messages: l.queued_messages,
        inflight: l.inflight,
    }
}
