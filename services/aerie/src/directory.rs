//! The token directory of the embedded shape: read in-process from the
//! control plane's store (signing keys, revoked tokens, tenant statuses,
//! tenants' issuers). Issuers registered by JWKS URL are fetched here and
//! cached: refetched every [`JWKS_URL_TTL`], and sooner (at most every
//! `ON_DEMAND_REFRESH_INTERVAL`) when a token names a `kid` we do not have.

use aerie_control::AppState;
use aerie_control::api::admin::STATUS_ACTIVE;
use aerie_control::plan::Limits;
use aerie_control::store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aerie_gateway::auth::{
    Directory, DirectorySource, TenantFacts, TenantIssuer, TenantLimits, TenantStatus,
};
use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;

/// Loads a [`Directory`] from the control plane `aerie serve` runs.
pub struct ControlDirectory {
    control: AppState,
    jwks_urls: JwksUrlCache,
}

impl ControlDirectory {
    pub fn new(control: AppState) -> ControlDirectory {
        ControlDirectory {
            control,
            jwks_urls: JwksUrlCache::default(),
        }
    }
}

#[async_trait::async_trait]
impl DirectorySource for ControlDirectory {
    async fn load(&self) -> anyhow::Result<Directory> {
        self.load_with(JWKS_URL_TTL).await
    }

    /// Fetches every JWKS URL again: the cache runs this at most every
    /// [`ON_DEMAND_REFRESH_INTERVAL`], however many unknown `kid`s arrive.
    async fn load_on_demand(&self) -> anyhow::Result<Directory> {
        self.load_with(Duration::ZERO).await
    }
}

impl ControlDirectory {
    /// Loads everything; JWKS URLs fetched longer than `max_age` ago are fetched again.
    async fn load_with(&self, max_age: Duration) -> anyhow::Result<Directory> {
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
        for issuer in store.all_issuers().await? {
            let loaded = match (&issuer.jwks_url, &issuer.jwks, &issuer.public_key_pem) {
                (Some(url), _, _) => self
                    .jwks_urls
                    .get(url, max_age)
                    .await
                    .map(|set| TenantIssuer::from_jwks(&issuer.issuer, &set)),
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
}

/// A JWKS URL issuer's keys are fetched again after this long.
pub const JWKS_URL_TTL: Duration = Duration::from_secs(300);
/// After a failed fetch, the next try waits this long (the last good keys stay).
const JWKS_URL_RETRY: Duration = Duration::from_secs(30);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The key sets fetched from tenants' JWKS URLs.
#[derive(Default)]
struct JwksUrlCache {
    client: std::sync::OnceLock<reqwest::Client>,
    entries: Mutex<HashMap<String, Fetched>>,
}

struct Fetched {
    at: Instant,
    /// The last set that fetched and parsed, if any did.
    set: Option<JwkSet>,
    failed: bool,
}

impl JwksUrlCache {
    /// The set at `url`, fetched now if the cached one is older than
    /// `max_age` (or the last try failed more than [`JWKS_URL_RETRY`] ago).
    async fn get(&self, url: &str, max_age: Duration) -> anyhow::Result<JwkSet> {
        let cached = {
            let entries = self.entries.lock().expect("not poisoned");
            entries.get(url).map(|f| {
                // After a failure: every 30 s, or sooner when asked on demand.
                let wait = if f.failed {
                    max_age.min(JWKS_URL_RETRY)
                } else {
                    max_age
                };
                (f.at.elapsed() < wait, f.set.clone())
            })
        };
        if let Some((true, set)) = &cached {
            return set
                .clone()
                .context("the JWKS URL did not answer with a key set");
        }
        let fetched = self.fetch(url).await;
        let mut entries = self.entries.lock().expect("not poisoned");
        let entry = entries.entry(url.to_owned()).or_insert(Fetched {
            at: Instant::now(),
            set: None,
            failed: false,
        });
        entry.at = Instant::now();
        match fetched {
            Ok(set) => {
                entry.failed = false;
                entry.set = Some(set.clone());
                Ok(set)
            }
            Err(e) => {
                entry.failed = true;
                tracing::warn!(%url, error = %e, "cannot fetch a tenant's JWKS; keeping the last keys");
                entry.set.clone().ok_or(e)
            }
        }
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<JwkSet> {
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(JWKS_FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a TLS client builds")
        });
        let response = client.get(url).send().await?.error_for_status()?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
        }
        let body = response.bytes().await?;
        if body.len() > MAX_JWKS_BYTES {
            anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
        }
        serde_json::from_slice(&body).context("the JWKS does not parse")
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
