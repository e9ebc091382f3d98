//! Tenants' JWKS URLs, each fetched by its own task on its own schedule
//! (every [`JWKS_URL_TTL`], sooner with back-off after a failure, and at once
//! when a token names a `kid` the issuer lacks), through the egress client.
//! The directory reload only reads the last keys each task fetched, so a
//! slow or silent URL delays nobody but the tokens of its own issuer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aerie_egress::{Egress, Limits};
use aerie_gateway::auth::TenantIssuer;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::{Notify, watch};

/// A JWKS URL issuer's keys are fetched again after this long.
pub const JWKS_URL_TTL: Duration = Duration::from_secs(300);
/// The first retry after a failure; doubled for each failure after it, up to the TTL.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const FETCH_LIMITS: Limits = Limits {
    timeout: Duration::from_secs(3),
    max_body_bytes: 256 * 1024,
};
/// The `purpose` label of the outbound request metric.
const PURPOSE: &str = "jwks";

/// (tenant id, `iss`).
type IssuerId = (String, String);

/// The fetch task of every JWKS URL issuer, and what each last fetched.
pub struct JwksUrls {
    egress: Egress,
    issuers: Mutex<HashMap<IssuerId, Tracked>>,
}

struct Tracked {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What an issuer's task and its readers share.
struct Shared {
    /// The last key set that fetched and parsed (kept through failures).
    last_good: Mutex<Option<TenantIssuer>>,
    /// Asks the task to fetch now.
    wake: Notify,
    /// Fetches started, and (in the channel) finished: a waiter waits for a
    /// fetch that started after it asked.
    started: AtomicU64,
    finished: watch::Sender<u64>,
}

impl JwksUrls {
    pub fn new(egress: Egress) -> JwksUrls {
        JwksUrls {
            egress,
            issuers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the tracked issuers exactly `wanted` (tenant, `iss`, URL): new
    /// ones (or a new URL) start fetching, removed ones stop. Never waits.
    pub fn track<'a>(&self, wanted: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) {
        let mut issuers = self.issuers.lock().expect("not poisoned");
        let mut kept = HashMap::with_capacity(issuers.len());
        for (tenant, iss, url) in wanted {
            let id = (tenant.to_owned(), iss.to_owned());
            let tracked = match issuers.remove(&id) {
                Some(t) if t.url == url => t,
                old => {
                    if let Some(old) = old {
                        old.task.abort();
                    }
                    self.start(&id, url)
                }
            };
            kept.insert(id, tracked);
        }
        for (_, gone) in issuers.drain() {
            gone.task.abort();
        }
        *issuers = kept;
    }

    fn start(&self, (tenant, iss): &IssuerId, url: &str) -> Tracked {
        let shared = Arc::new(Shared {
            last_good: Mutex::new(None),
            wake: Notify::new(),
            started: AtomicU64::new(0),
            finished: watch::Sender::new(0),
        });
        let task = tokio::spawn(fetch_forever(
            self.egress.clone(),
            shared.clone(),
            tenant.clone(),
            iss.clone(),
            url.to_owned(),
        ));
        Tracked {
            url: url.to_owned(),
            shared,
            task,
        }
    }

    /// The keys last fetched for `tenant`'s issuer `iss`, if any fetch worked.
    pub fn keys(&self, tenant: &str, iss: &str) -> Option<TenantIssuer> {
        let issuers = self.issuers.lock().expect("not poisoned");
        let tracked = issuers.get(&(tenant.to_owned(), iss.to_owned()))?;
        tracked
            .shared
            .last_good
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// Fetches `tenant`'s issuer `iss` now (joining a fetch under way only if
    /// it started after this call) and returns when it finished or timed out.
    pub async fn refresh(&self, tenant: &str, iss: &str) {
        let shared = {
            let issuers = self.issuers.lock().expect("not poisoned");
            match issuers.get(&(tenant.to_owned(), iss.to_owned())) {
                Some(t) => t.shared.clone(),
                None => return,
            }
        };
        let mut finished = shared.finished.subscribe();
        let wanted = shared.started.load(Ordering::SeqCst) + 1;
        shared.wake.notify_one();
        let _ = tokio::time::timeout(
            FETCH_LIMITS.timeout + Duration::from_secs(1),
            finished.wait_for(|n| *n >= wanted),
        )
        .await;
    }
}

impl Drop for JwksUrls {
    fn drop(&mut self) {
        for tracked in self.issuers.get_mut().expect("not poisoned").values() {
            tracked.task.abort();
        }
    }
}

/// One issuer's schedule: fetch, keep the last good keys, wait, again.
async fn fetch_forever(
    egress: Egress,
    shared: Arc<Shared>,
    tenant: String,
    iss: String,
    url: String,
) {
    let mut failures = 0u32;
    loop {
        shared.started.fetch_add(1, Ordering::SeqCst);
        match fetch(&egress, &url).await {
            Ok(set) => {
                *shared.last_good.lock().expect("not poisoned") =
                    Some(TenantIssuer::from_jwks(&iss, &set));
                failures = 0;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Not the URL: its query may hold the tenant's credentials.
                tracing::warn!(%tenant, issuer = %iss, error = %e, "cannot fetch a tenant's JWKS; keeping the last keys");
            }
        }
        shared.finished.send_modify(|n| *n += 1);
        let wait = match failures {
            0 => JWKS_URL_TTL,
            n => FIRST_RETRY
                .saturating_mul(1 << (n - 1).min(16))
                .min(JWKS_URL_TTL),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

async fn fetch(egress: &Egress, url: &str) -> anyhow::Result<JwkSet> {
    let body = egress.get(PURPOSE, url, FETCH_LIMITS).await?;
    Ok(serde_json::from_slice(&body)?)
}
