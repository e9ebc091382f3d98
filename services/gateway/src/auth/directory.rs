//! The verification directory: an immutable snapshot, swapped whole.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::watch;

/// A public key that verifies tokens, and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// The per-tenant limits the gateway enforces: the same fields as the
/// control plane's plan limits (the core keeps them on each tenant).
pub use aerie_core::TenantLimits;

/// What the gateway knows of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantFacts {
    pub status: TenantStatus,
    pub limits: TenantLimits,
}

impl TenantFacts {
    /// An active tenant with no limits but the global configuration's.
    pub fn active() -> TenantFacts {
        TenantFacts {
            status: TenantStatus::Active,
            limits: TenantLimits::UNLIMITED,
        }
    }
}

/// Everything token verification reads, as of one load.
#[derive(Clone, Default)]
pub struct Directory {
    /// By `kid`.
    pub keys: HashMap<String, VerifyingKey>,
    /// Revoked and not yet expired, by tenant: a jti is revoked only in the
    /// tenant that revoked it (tenants' own issuers choose their jtis).
    pub revoked_jtis: HashMap<String, HashSet<String>>,
    /// A tenant that is not here does not exist (any more).
    pub tenants: HashMap<String, TenantFacts>,
    /// Tenants' own issuers, by tenant id: a token is checked against them
    /// only when its `tnt` names that tenant and its `iss` that issuer.
    pub issuers: HashMap<String, Vec<TenantIssuer>>,
    /// The traces of the control-plane requests behind recent changes: a
    /// kick they cause joins its request's trace.
    pub traces: aerie_core::trace_context::ChangeTraces,
}

/// A tenant's own token issuer and its public keys.
#[derive(Clone)]
pub struct TenantIssuer {
    /// The `iss` of its tokens.
    pub issuer: String,
    pub keys: Vec<IssuerKey>,
    /// A digest of the key material it was built from: a new key under the
    /// same `kid` (or a new PEM for the same issuer) is a change too.
    material: u64,
}

/// A key of a tenant's issuer and the algorithms it verifies (asymmetric
/// only: never an HMAC secret, never `none`).
#[derive(Clone)]
pub struct IssuerKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl TenantIssuer {
    /// The usable public keys of `set`; symmetric (`oct`) keys and keys of
    /// other types are skipped, and a key's `alg`, if set, narrows it.
    pub fn from_jwks(issuer: &str, set: &JwkSet) -> TenantIssuer {
        TenantIssuer {
            issuer: issuer.to_owned(),
            keys: set.keys.iter().filter_map(issuer_key).collect(),
            material: digest(serde_json::to_string(set).unwrap_or_default().as_bytes()),
        }
    }

    /// One SubjectPublicKeyInfo PEM: RSA, EC (P-256/P-384) or Ed25519.
    pub fn from_pem(issuer: &str, pem: &[u8]) -> anyhow::Result<TenantIssuer> {
        use Algorithm::*;
        let (key, algorithms) = if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            (k, vec![EdDSA])
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (k, vec![ES256, ES384])
        } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (k, RSA_ALGORITHMS.to_vec())
        } else {
            anyhow::bail!("not an RSA, EC or Ed25519 public key PEM");
        };
        Ok(TenantIssuer {
            issuer: issuer.to_owned(),
            keys: vec![IssuerKey {
                kid: None,
                key,
                algorithms,
            }],
            material: digest(pem),
        })
    }
}

/// Change detection only (not a security boundary).
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// What [`Directory::same_as`] compares of the issuers: tenant, `iss` and
/// key material.
fn issuers_outline(d: &Directory) -> Vec<(&str, &str, u64)> {
    let mut v: Vec<_> = d
        .issuers
        .iter()
        .flat_map(|(t, list)| {
            list.iter()
                .map(move |i| (t.as_str(), i.issuer.as_str(), i.material))
        })
        .collect();
    v.sort_unstable();
    v
}

const RSA_ALGORITHMS: [Algorithm; 6] = {
    use Algorithm::*;
    [RS256, RS384, RS512, PS256, PS384, PS512]
};

/// Every `alg` a tenant issuer's key can verify; anything else is refused
/// before a key is looked up.
pub const TENANT_ISSUER_ALGORITHMS: [Algorithm; 9] = {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

fn issuer_key(jwk: &Jwk) -> Option<IssuerKey> {
    use Algorithm::*;
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![EdDSA],
        // Symmetric or unknown: never a verifying key here.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string()).ok()?;
            if !family.contains(&named) {
                return None;
            }
            vec![named]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(IssuerKey {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field(
                "revoked_jtis",
                &self.revoked_jtis.values().map(HashSet::len).sum::<usize>(),
            )
            .field("tenants", &self.tenants.len())
            .finish()
    }
}

impl Directory {
    /// Whether tenant `tenant_id` revoked `jti`.
    pub fn is_revoked(&self, tenant_id: &str, jti: &str) -> bool {
        self.revoked_jtis
            .get(tenant_id)
            .is_some_and(|jtis| jtis.contains(jti))
    }

    /// Records that tenant `tenant_id` revoked `jti`.
    pub fn revoke(&mut self, tenant_id: &str, jti: &str) {
        self.revoked_jtis
            .entry(tenant_id.to_owned())
            .or_default()
            .insert(jti.to_owned());
    }

    /// Whether `other` says the same about keys, revocations and tenants
    /// (a reload that changed nothing wakes nobody).
    pub fn same_as(&self, other: &Directory) -> bool {
        self.tenants == other.tenants
            && self.revoked_jtis == other.revoked_jtis
            && issuers_outline(self) == issuers_outline(other)
            && self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(kid, k)| {
                other
                    .keys
                    .get(kid)
                    .is_some_and(|o| o.algorithm == k.algorithm)
            })
    }

    /// Adds the EdDSA (OKP) keys of `set` that carry a `kid`; every other key
    /// is skipped (never turned into an HMAC secret or anything else).
    pub fn add_jwks(&mut self, set: &JwkSet) {
        for jwk in &set.keys {
            let (Some(kid), AlgorithmParameters::OctetKeyPair(okp)) =
                (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA)) {
                continue;
            }
            match DecodingKey::from_ed_components(&okp.x) {
                Ok(key) => {
                    self.keys.insert(
                        kid.clone(),
                        VerifyingKey {
                            key,
                            algorithm: Algorithm::EdDSA,
                        },
                    );
                }
                Err(e) => tracing::warn!(%kid, error = %e, "skipping a JWK that does not parse"),
            }
        }
    }
}

/// Where directories come from. `aerie serve` reads the control plane's
/// store in-process; a scale-out gateway can implement this over NATS KV.
#[async_trait::async_trait]
pub trait DirectorySource: Send + Sync {
    /// Must not wait on anything a tenant controls (a JWKS URL): every
    /// tenant's revocations and suspensions arrive through it.
    async fn load(&self) -> anyhow::Result<Directory>;

    /// A token of `tenant` named a `kid` that its issuer `issuer` does not
    /// have (a key rotated a moment ago): a source that fetches that issuer's
    /// keys from afar fetches them now and returns once it has (or gave up),
    /// so that the next [`DirectorySource::load`] carries them.
    async fn refresh_issuer(&self, _tenant: &str, _issuer: &str) {}
}

/// The current [`Directory`], published through a `watch` channel, and the
/// source it is refreshed from.
pub struct DirectoryCache {
    source: Arc<dyn DirectorySource>,
    current: watch::Sender<Arc<Directory>>,
    /// The generation the next load gets when it starts.
    next_generation: AtomicU64,
    /// The generation of the load `current` came from.
    published_generation: AtomicU64,
    /// When the newest load that `current` reflects started (a load that
    /// found nothing new counts): the control plane's state as of then.
    as_of: Mutex<Instant>,
    /// When an on-demand refresh (an unknown `kid`) last ran.
    last_on_demand: Mutex<Option<Instant>>,
    /// When each tenant issuer, by (tenant, `iss`), was last refreshed on demand.
    last_issuer_refresh: Mutex<HashMap<(String, String), tokio::time::Instant>>,
    /// The period of [`DirectoryCache::spawn_refresh`], once started.
    period: Mutex<Option<Duration>>,
}

/// On-demand refreshes (unknown `kid`) run at most this often (per tenant
/// issuer for a tenant issuer's token).
pub const ON_DEMAND_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Loads that finished after a newer one was published, and were dropped.
pub const DIRECTORY_STALE_LOADS_TOTAL: &str = "aerie_directory_stale_loads_total";

impl DirectoryCache {
    /// Loads the first directory; fails if the source does.
    pub async fn load(source: Arc<dyn DirectorySource>) -> anyhow::Result<Arc<DirectoryCache>> {
        let started = Instant::now();
        let first = source.load().await?;
        let cache = DirectoryCache::new(source, first);
        *cache.as_of.lock() = started;
        Ok(Arc::new(cache))
    }

    /// A cache that starts with `first`.
    pub fn new(source: Arc<dyn DirectorySource>, first: Directory) -> DirectoryCache {
        DirectoryCache {
            source,
            current: watch::Sender::new(Arc::new(first)),
            next_generation: AtomicU64::new(1),
            published_generation: AtomicU64::new(0),
            as_of: Mutex::new(Instant::now()),
            last_on_demand: Mutex::new(None),
            last_issuer_refresh: Mutex::new(HashMap::new()),
            period: Mutex::new(None),
        }
    }

    /// The directory as of the last successful load.
    pub fn snapshot(&self) -> Arc<Directory> {
        self.current.borrow().clone()
    }

    /// Follows every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Directory>> {
        self.current.subscribe()
    }

    /// Loads from the source now; on failure the old snapshot stays.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        // Numbered when it starts: a load that began before a revocation must
        // not overwrite one that began after it, whichever finishes last.
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let next = self.source.load().await?;
        self.publish(generation, started, next);
        Ok(())
    }

    /// The control plane's state the current snapshot reflects, as of when:
    /// something created in this process after it (a tenant's core, say)
    /// may be missing from the snapshot without having been deleted.
    pub fn as_of(&self) -> Instant {
        *self.as_of.lock()
    }

    /// Makes `next`, loaded as `generation`, the current snapshot unless a
    /// newer load is published already; followers wake only if it differs.
    fn publish(&self, generation: u64, started: Instant, next: Directory) {
        self.current.send_if_modified(|current| {
            // Under the channel's write lock: publishes are serialized.
            if generation < self.published_generation.load(Ordering::Relaxed) {
                metrics::counter!(DIRECTORY_STALE_LOADS_TOTAL).increment(1);
                return false;
            }
            self.published_generation
                .store(generation, Ordering::Relaxed);
            let mut as_of = self.as_of.lock();
            *as_of = (*as_of).max(started);
            drop(as_of);
            if current.same_as(&next) {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }

    /// [`DirectoryCache::refresh`], unless one ran on demand less than
    /// [`ON_DEMAND_REFRESH_INTERVAL`] ago. Returns whether it refreshed.
    pub async fn refresh_on_demand(&self) -> bool {
        {
            let mut last = self.last_on_demand.lock();
            if last.is_some_and(|t| t.elapsed() < ON_DEMAND_REFRESH_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.refresh_logged().await
    }

    /// A token named a `kid` that `tenant`'s issuer `issuer` lacks: asks the
    /// source to refetch that issuer only, then reloads; at most every
    /// [`ON_DEMAND_REFRESH_INTERVAL`] per issuer, and only for an issuer the
    /// snapshot has (anyone can send any `tnt`, `iss` and `kid`). Returns
    /// whether it refreshed.
    pub async fn refresh_issuer_on_demand(&self, tenant: &str, issuer: &str) -> bool {
        let known = self
            .snapshot()
            .issuers
            .get(tenant)
            .is_some_and(|list| list.iter().any(|i| i.issuer == issuer));
        if !known {
            return false;
        }
        {
            let now = tokio::time::Instant::now();
            let mut last = self.last_issuer_refresh.lock();
            last.retain(|_, at| now.duration_since(*at) < ON_DEMAND_REFRESH_INTERVAL);
            let key = (tenant.to_owned(), issuer.to_owned());
            if last.contains_key(&key) {
                return false;
            }
            last.insert(key, now);
        }
        self.source.refresh_issuer(tenant, issuer).await;
        self.refresh_logged().await
    }

    async fn refresh_logged(&self) -> bool {
        match self.refresh().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the token directory");
                false
            }
        }
    }

    /// Waits for the next periodic refresh (at most its period and a half);
    /// without periodic refreshes, refreshes on demand. Returns whether a
    /// newer directory is there.
    pub async fn next_refresh(&self) -> bool {
        let period = *self.period.lock();
        let Some(period) = period else {
            return self.refresh_on_demand().await;
        };
        let mut next = self.current.subscribe();
        matches!(
            tokio::time::timeout(period + period / 2, next.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Refreshes every `period` until the cache is dropped elsewhere
    /// (the task holds only a weak reference).
    pub fn spawn_refresh(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        *self.period.lock() = Some(period);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                if let Err(e) = cache.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the token directory; keeping the last one");
                }
            }
        })
    }
}
