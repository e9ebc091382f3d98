//! Tenants' JWKS URLs, each fetched by its own task on its own schedule
//! (every [`JWKS_URL_TTL`], sooner with back-off after a failure, and at once
//! when a token names a `kid` the issuer lacks), through the egress client.
//! The directory reload only reads the last keys each task fetched, so a
//! slow or silent URL delays nobody but the tokens of its own issuer.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aerie_egress::{Egress, Limits};
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
    /// Poked when a fetch brought keys that differ from the last ones, so
    /// whoever publishes them need not wait for its next periodic pass.
    on_change: Option<Arc<Notify>>,
}

struct Tracked {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What an issuer's task and its readers share.
struct Shared {
    /// The last key set that fetched and parsed (kept through failures).
    last_good: Mutex<Option<JwkSet>>,
    on_change: Option<Arc<Notify>>,
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
            on_change: None,
        }
    }

    /// Pokes `notify` whenever an issuer's fetched keys change.
    pub fn notifying(mut self, notify: Arc<Notify>) -> JwksUrls {
        self.on_change = Some(notify);
        self
    }

    /// Makes the tracked issuers exactly `wanted` (tenant, `iss`, URL): new
    /// ones (or a new URL) start fetching, removed ones stop. Never waits.
    pub fn track<'a>(&self, wanted: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) {
        let mut issuers = self.issuers.lock();
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
            on_change: self.on_change.clone(),
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
    pub fn keys(&self, tenant: &str, iss: &str) -> Option<JwkSet> {
        let issuers = self.issuers.lock();
        let tracked = issuers.get(&(tenant.to_owned(), iss.to_owned()))?;
        tracked.shared.last_good.lock().clone()
    }

    /// Fetches `tenant`'s issuer `iss` now (joining a fetch under way only if
    /// it started after this call) and returns when it finished or timed out.
    pub async fn refresh(&self, tenant: &str, iss: &str) {
        let shared = {
            let issuers = self.issuers.lock();
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
        for tracked in self.issuers.get_mut().values() {
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
                let changed = shared.last_good.lock().replace(set.clone()) != Some(set);
                if changed && let Some(notify) = &shared.on_change {
                    notify.notify_one();
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_egress::DestinationPolicy;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// RFC 8037's example Ed25519 public key.
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    /// A loopback JWKS server: serves `keys` (changeable) and counts requests.
    struct Served {
        url: String,
        kids: Arc<Mutex<Vec<&'static str>>>,
        requests: Arc<AtomicUsize>,
    }

    async fn served(kids: &[&'static str]) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let kids = Arc::new(Mutex::new(kids.to_vec()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (k, r) = (kids.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                r.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<String> = k
                    .lock()
                    .iter()
                    .map(|kid| {
                        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"{kid}"}}"#)
                    })
                    .collect();
                let body = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
                let _ = s.read(&mut [0u8; 2048]).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        Served {
            url,
            kids,
            requests,
        }
    }

    fn kids(urls: &JwksUrls, tenant: &str, iss: &str) -> Vec<String> {
        urls.keys(tenant, iss)
            .map(|set| {
                set.keys
                    .iter()
                    .filter_map(|k| k.common.key_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_issuer_is_fetched_when_tracked_on_demand_and_no_more_once_untracked() {
        let server = served(&["k1"]).await;
        let urls = JwksUrls::new(Egress::new(DestinationPolicy::ALLOW_PRIVATE));
        urls.track([("t1", "idp", server.url.as_str())]);
        // The first fetch starts with the task; `refresh` waits for a later one.
        urls.refresh("t1", "idp").await;
        assert_eq!(kids(&urls, "t1", "idp"), ["k1"]);

        // Rotated: a refresh asked after the change sees it.
        *server.kids.lock() = vec!["k1", "k2"];
        urls.refresh("t1", "idp").await;
        assert_eq!(kids(&urls, "t1", "idp"), ["k1", "k2"]);
        // Another tenant's issuer of the same name is not this one.
        assert!(urls.keys("t2", "idp").is_none());

        // Removed: its task stops, and a refresh fetches nothing.
        urls.track([]);
        let before = server.requests.load(Ordering::SeqCst);
        urls.refresh("t1", "idp").await;
        tokio::task::yield_now().await;
        assert_eq!(server.requests.load(Ordering::SeqCst), before);
        assert!(urls.keys("t1", "idp").is_none());
    }

    #[tokio::test]
    async fn a_loopback_url_is_not_fetched_under_the_default_policy() {
        let server = served(&["k1"]).await;
        let urls = JwksUrls::new(Egress::new(DestinationPolicy::PUBLIC_ONLY));
        urls.track([("t1", "idp", server.url.as_str())]);
        urls.refresh("t1", "idp").await;
        assert!(urls.keys("t1", "idp").is_none());
        assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    }
}
