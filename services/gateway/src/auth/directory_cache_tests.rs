//! `DirectoryCache` against a source the test controls: the order loads
//! finish in, and which issuers are refreshed on demand.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use tokio::sync::{Notify, oneshot};

use super::directory::{Directory, DirectoryCache, DirectorySource, TenantIssuer};

/// Answers each load with the next scripted directory, after its gate opens.
#[derive(Default)]
struct Scripted {
    loads: Mutex<VecDeque<(Directory, Option<oneshot::Receiver<()>>)>>,
    started: Notify,
    issuer_refreshes: Mutex<Vec<(String, String)>>,
}

impl Scripted {
    fn then(&self, directory: Directory, gate: Option<oneshot::Receiver<()>>) {
        self.loads.lock().push_back((directory, gate));
    }
}

#[async_trait::async_trait]
impl DirectorySource for Scripted {
    async fn load(&self) -> anyhow::Result<Directory> {
        let (directory, gate) = self.loads.lock().pop_front().unwrap_or_default();
        self.started.notify_one();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok(directory)
    }

    async fn refresh_issuer(&self, tenant: &str, issuer: &str) {
        self.issuer_refreshes
            .lock()
            .push((tenant.to_owned(), issuer.to_owned()));
    }
}

fn revoking(jti: &str) -> Directory {
    let mut d = Directory::default();
    d.revoke("t", jti);
    d
}

#[tokio::test]
async fn a_load_that_started_before_a_newer_one_never_replaces_it() {
    let source = Arc::new(Scripted::default());
    let (release_slow, slow_gate) = oneshot::channel();
    // The slow load read the store before the revocation, the fast one after.
    source.then(Directory::default(), Some(slow_gate));
    source.then(revoking("jti-1"), None);
    let cache = Arc::new(DirectoryCache::new(source.clone(), Directory::default()));

    let slow = tokio::spawn({
        let cache = cache.clone();
        async move { cache.refresh().await }
    });
    source.started.notified().await;
    cache.refresh().await.unwrap();
    assert!(cache.snapshot().is_revoked("t", "jti-1"));

    release_slow.send(()).unwrap();
    slow.await.unwrap().unwrap();
    assert!(
        cache.snapshot().is_revoked("t", "jti-1"),
        "the older load was published over the newer one"
    );
    // A load started afterwards is published as usual.
    source.then(revoking("jti-2"), None);
    cache.refresh().await.unwrap();
    assert!(cache.snapshot().is_revoked("t", "jti-2"));
}

fn with_issuers(tenant: &str, issuers: &[&str]) -> Directory {
    let mut d = Directory::default();
    let empty = JwkSet { keys: vec![] };
    d.issuers.insert(
        tenant.to_owned(),
        issuers
            .iter()
            .map(|i| TenantIssuer::from_jwks(i, &empty))
            .collect(),
    );
    d
}

#[tokio::test]
async fn an_unknown_kid_refreshes_only_its_issuer_at_most_once_per_interval() {
    let source = Arc::new(Scripted::default());
    let snapshot = with_issuers("t1", &["https://a.example", "https://b.example"]);
    for _ in 0..10 {
        source.then(snapshot.clone(), None);
    }
    let cache = DirectoryCache::new(source.clone(), snapshot.clone());
    let refreshes = || source.issuer_refreshes.lock().clone();
    let pair = |t: &str, i: &str| (t.to_owned(), i.to_owned());

    assert!(
        cache
            .refresh_issuer_on_demand("t1", "https://a.example")
            .await
    );
    assert_eq!(refreshes(), [pair("t1", "https://a.example")]);
    // The same issuer again, at once: nothing.
    assert!(
        !cache
            .refresh_issuer_on_demand("t1", "https://a.example")
            .await
    );
    // Another issuer has its own budget.
    assert!(
        cache
            .refresh_issuer_on_demand("t1", "https://b.example")
            .await
    );
    // An issuer or tenant the directory does not have is never fetched.
    assert!(
        !cache
            .refresh_issuer_on_demand("t1", "https://c.example")
            .await
    );
    assert!(
        !cache
            .refresh_issuer_on_demand("t2", "https://a.example")
            .await
    );
    assert_eq!(refreshes().len(), 2);
}
