//! The control side's reading of [`Facts`]: from the control plane's store
//! (signing keys, tenants, revocations, issuers) plus the keys of issuers
//! registered by JWKS URL, which [`JwksUrls`] fetches each on its own
//! schedule, so a read never waits on a tenant's server.
//!
//! `aerie serve` uses it as its [`DirectorySource`] in-process; `aerie
//! control --nats` publishes what it reads ([`crate::FactsPublisher`]).

use aerie_control::AppState;
use aerie_control::api::admin::STATUS_ACTIVE;
use aerie_control::store;
use aerie_gateway::auth::{Directory, DirectorySource};
use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;

use crate::jwks_urls::JwksUrls;
use crate::model::{Facts, IssuerKeys, Status, TenantRecord};

/// Reads the facts from the control plane this process runs.
pub struct ControlFacts {
    control: AppState,
    jwks_urls: JwksUrls,
}

impl ControlFacts {
    pub fn new(control: AppState, jwks_urls: JwksUrls) -> ControlFacts {
        ControlFacts { control, jwks_urls }
    }

    /// The facts as the store has them now.
    pub async fn read(&self) -> anyhow::Result<Facts> {
        let store = self.control.store();
        let now = store::now();
        let jwks = aerie_control::keys::jwks(store, now).await?;
        let signing_keys: JwkSet = serde_json::to_value(&jwks)
            .and_then(serde_json::from_value)
            .context("the JWKS does not parse as JWKs")?;
        let revoked = store
            .revoked_tokens_unexpired(now)
            .await?
            .into_iter()
            .map(|r| ((r.tenant_id, r.jti), r.expires_at.unix_timestamp()))
            .collect();
        let tenants = store
            .all_tenants()
            .await?
            .into_iter()
            .map(|t| {
                let status = if t.status == STATUS_ACTIVE {
                    Status::Active
                } else {
                    Status::Suspended
                };
                let limits = t.limits;
                (t.id, TenantRecord { status, limits })
            })
            .collect();
        let all_issuers = store.all_issuers().await?;
        self.jwks_urls.track(all_issuers.iter().filter_map(|i| {
            let url = i.jwks_url.as_deref()?;
            Some((i.tenant_id.as_str(), i.issuer.as_str(), url))
        }));
        let mut issuers = std::collections::BTreeMap::new();
        for issuer in all_issuers {
            let keys = match (issuer.jwks_url, issuer.jwks, issuer.public_key_pem) {
                (Some(_), _, _) => match self.jwks_urls.keys(&issuer.tenant_id, &issuer.issuer) {
                    Some(set) => IssuerKeys::Jwks(set),
                    // Not fetched yet (its task has just started), or never
                    // successfully: its tokens wait for a read that has keys.
                    None => continue,
                },
                (None, Some(jwks), _) => match serde_json::from_str::<JwkSet>(&jwks) {
                    Ok(set) => IssuerKeys::Jwks(set),
                    Err(e) => {
                        tracing::warn!(tenant = %issuer.tenant_id, issuer = %issuer.issuer, error = %e, "skipping a tenant issuer whose stored JWKS does not parse");
                        continue;
                    }
                },
                (None, None, Some(pem)) => IssuerKeys::Pem(pem),
                (None, None, None) => {
                    tracing::warn!(tenant = %issuer.tenant_id, issuer = %issuer.issuer, "skipping a tenant issuer without a key source");
                    continue;
                }
            };
            issuers.insert((issuer.tenant_id, issuer.issuer), keys);
        }
        Ok(Facts {
            issuer: Some(self.control.issuer().to_owned()),
            signing_keys,
            tenants,
            issuers,
            revoked,
            traces: self.control.recent_changes().traces(),
        })
    }

    /// Fetches `tenant`'s issuer `issuer` from its JWKS URL now.
    pub async fn refresh_issuer(&self, tenant: &str, issuer: &str) {
        self.jwks_urls.refresh(tenant, issuer).await;
    }
}

/// The embedded shape's directory: the facts read in-process.
#[async_trait::async_trait]
impl DirectorySource for ControlFacts {
    async fn load(&self) -> anyhow::Result<Directory> {
        Ok(self.read().await?.to_directory())
    }

    /// A token named a `kid` this issuer lacks: fetch its JWKS URL now (the
    /// cache allows this at most every few seconds per issuer).
    async fn refresh_issuer(&self, tenant: &str, issuer: &str) {
        ControlFacts::refresh_issuer(self, tenant, issuer).await;
    }
}
