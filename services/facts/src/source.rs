//! The gateway side: the facts bucket, watched (`watch_with_history`), kept
//! in memory and pushed into the [`DirectoryCache`] at each change, so a
//! revocation or suspension reaches the enforcer as soon as NATS delivers
//! it (no poll). [`KvDirectorySource::readiness`] says whether the gateway
//! holds the facts (the bucket's history arrived) and NATS is connected.

use std::sync::{Arc, Weak};
use std::time::Duration;

use aerie_gateway::auth::{Directory, DirectoryCache, DirectorySource};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connect::Nats;
use crate::layout;
use crate::model::Facts;
use crate::refresh;

/// Between two attempts to (re)open the watch.
const REWATCH: Duration = Duration::from_millis(500);

/// Facts entries that did not parse and were skipped.
pub const FACTS_BAD_ENTRIES_TOTAL: &str = "aerie_facts_bad_entries_total";
/// The facts bucket's revision (KV sequence) this gateway enforces: behind
/// the bucket's own last revision while a change is on its way.
pub const FACTS_REVISION: &str = "aerie_facts_revision";
/// When this gateway last applied a facts change, Unix seconds (facts
/// change only when the control plane changes something: an old value
/// alone is not a fault, a revision behind `aerie_facts_published_revision` is).
pub const FACTS_UPDATED: &str = "aerie_facts_updated_timestamp_seconds";

/// The facts as the bucket has them, for a gateway.
pub struct KvDirectorySource {
    nats: Nats,
    prefix: String,
    state: Mutex<State>,
    /// Bumped at each change of `state` (and when the facts are first held).
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    facts: Facts,
    /// The bucket's history has arrived once.
    held: bool,
}

impl KvDirectorySource {
    /// Starts watching the facts bucket of `prefix` (waiting for NATS and
    /// for the bucket to exist) until `shutdown`.
    pub fn spawn(nats: Nats, prefix: &str, shutdown: CancellationToken) -> Arc<KvDirectorySource> {
        let source = Arc::new(KvDirectorySource {
            nats,
            prefix: prefix.to_owned(),
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(0),
        });
        // None applied yet: a gateway that never gets the control plane's
        // facts shows 0, behind what it publishes (AerieFactsStale).
        metrics::gauge!(FACTS_REVISION).set(0.0);
        let bucket = layout::bucket(prefix);
        let weak = Arc::downgrade(&source);
        tokio::spawn(async move {
            // Logged when it changes: a gateway waiting for the control
            // plane would otherwise log twice a second.
            let mut last_error = String::new();
            loop {
                let Some(source) = weak.upgrade() else { return };
                tokio::select! {
                    result = source.follow(&bucket) => {
                        let error = result.err().map(|e| format!("{e:#}")).unwrap_or_default();
                        if !error.is_empty() && error != last_error {
                            tracing::warn!(%bucket, %error, "the facts watch stopped; reopening it");
                        }
                        last_error = error;
                    }
                    _ = shutdown.cancelled() => return,
                }
                drop(source);
                tokio::time::sleep(REWATCH).await;
            }
        });
        source
    }

    /// `Ok` while NATS is connected and the facts are held; else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.nats.is_connected() {
            return Err("not connected to NATS");
        }
        if !self.state.lock().held {
            return Err("the control plane's facts have not arrived from NATS yet");
        }
        Ok(())
    }

    /// The `iss` of the control plane's tokens, once the facts say it.
    pub fn control_issuer(&self) -> Option<String> {
        self.state.lock().facts.issuer.clone()
    }

    /// Waits until the facts are held and name the control plane's issuer.
    pub async fn wait_for_issuer(&self) -> String {
        let mut changes = self.changes.subscribe();
        loop {
            {
                let state = self.state.lock();
                if let (true, Some(issuer)) = (state.held, &state.facts.issuer) {
                    return issuer.clone();
                }
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Refreshes `cache` at every change of the facts, while both live.
    pub fn spawn_push(
        self: &Arc<Self>,
        cache: &Arc<DirectoryCache>,
    ) -> tokio::task::JoinHandle<()> {
        let mut changes = self.changes.subscribe();
        let cache: Weak<DirectoryCache> = Arc::downgrade(cache);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(cache) = cache.upgrade() else { return };
                if let Err(e) = cache.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the token directory");
                }
            }
        })
    }

    /// Reads the bucket's history into fresh facts, swaps them in once it
    /// has all arrived, then applies each change as it comes. Returns when
    /// the watch fails or ends.
    async fn follow(&self, bucket: &str) -> anyhow::Result<()> {
        let store = self
            .nats
            .jetstream()
            .get_key_value(bucket)
            .await
            .map_err(|e| anyhow::anyhow!("the facts bucket is not there (yet): {e}"))?;
        // An empty bucket delivers nothing, so nothing would mark the end of
        // its history: it is complete at once. Something put after this
        // status arrives through the watch like any change.
        let empty = store
            .status()
            .await
            .map_err(|e| anyhow::anyhow!("status of the facts bucket: {e}"))?
            .values()
            == 0;
        let mut watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| anyhow::anyhow!("watch the facts bucket: {e}"))?;
        let mut fresh = Some(Facts::default());
        if empty {
            self.replace(fresh.take().unwrap_or_default());
        }
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| anyhow::anyhow!("facts watch: {e}"))?;
            let value = match entry.operation {
                kv::Operation::Put => Some(&entry.value[..]),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            match &mut fresh {
                Some(facts) => {
                    apply_logged(facts, &entry.key, value);
                    if entry.delta == 0 {
                        self.replace(fresh.take().unwrap_or_default());
                        applied(entry.revision);
                    }
                }
                None => {
                    apply_logged(&mut self.state.lock().facts, &entry.key, value);
                    self.changes.send_modify(|n| *n += 1);
                    applied(entry.revision);
                }
            }
        }
        Err(anyhow::anyhow!("the facts watch ended"))
    }

    fn replace(&self, facts: Facts) {
        {
            let mut state = self.state.lock();
            state.facts = facts;
            state.held = true;
        }
        tracing::info!("the control plane's facts are held");
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Records that the facts up to `revision` are enforced here.
fn applied(revision: u64) {
    metrics::gauge!(FACTS_REVISION).set(revision as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(FACTS_UPDATED).set(now);
}

fn apply_logged(facts: &mut Facts, key: &str, value: Option<&[u8]>) {
    if let Err(e) = layout::apply(facts, key, value) {
        metrics::counter!(FACTS_BAD_ENTRIES_TOTAL).increment(1);
        tracing::warn!(key, error = %e, "skipping a facts entry that does not parse");
    }
}

#[async_trait::async_trait]
impl DirectorySource for KvDirectorySource {
    /// What the bucket says now; never waits on NATS.
    async fn load(&self) -> anyhow::Result<Directory> {
        let facts = self.state.lock().facts.clone();
        Ok(facts.to_directory())
    }

    /// A token named a `kid` this tenant issuer lacks: the control plane
    /// fetches the issuer's keys and publishes them; returns once they are
    /// here (or after a short wait: the `kid` may be bogus).
    async fn refresh_issuer(&self, tenant: &str, issuer: &str) {
        let mut changes = self.changes.subscribe();
        if refresh::ask(&self.nats, &self.prefix, tenant, issuer).await {
            let _ = tokio::time::timeout(ARRIVAL_WAIT, changes.changed()).await;
        }
    }
}

/// After the control plane answered a refresh, how long the change may
/// take to arrive through the watch.
const ARRIVAL_WAIT: Duration = Duration::from_millis(500);
