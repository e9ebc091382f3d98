//! The control side: keeps the facts bucket equal to what the control
//! plane's store says. Each pass re-reads the store and writes only what
//! differs from what it last published (deleting what is gone); a pass runs
//! when poked (after every mutating API request, and when a tenant's JWKS
//! URL brought new keys) and every [`PERIOD`] as a safety net. The first
//! pass, and the first after a reconnect or a failure, compares with what
//! the bucket really holds (a full reconcile) instead of its own memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::connect::Nats;
use crate::control::ControlFacts;
use crate::layout;
use crate::refresh::{self, Passes};

/// The safety net: a pass at least this often.
pub const PERIOD: Duration = Duration::from_secs(5);
/// After a failed pass, the next one comes this soon.
const RETRY: Duration = Duration::from_millis(500);

/// Facts keys written (`op="put"`) and deleted (`op="delete"`) by the publisher.
pub const FACTS_PUBLISHED_TOTAL: &str = "aerie_facts_published_total";
/// Publisher passes that failed (the store or NATS); retried.
pub const FACTS_PUBLISH_FAILURES_TOTAL: &str = "aerie_facts_publish_failures_total";
/// The facts bucket's last revision after the publisher's last pass: a
/// gateway whose `aerie_facts_revision` stays below it enforces old facts.
pub const FACTS_PUBLISHED_REVISION: &str = "aerie_facts_published_revision";

/// Publishes the control plane's facts into the facts bucket.
pub struct FactsPublisher {
    nats: Nats,
    prefix: String,
    bucket: String,
    facts: Arc<ControlFacts>,
    poke: Arc<Notify>,
    passes: Arc<Passes>,
}

impl FactsPublisher {
    /// `poke` asks for a pass now (share it with whatever changes facts).
    pub fn new(
        nats: Nats,
        prefix: &str,
        facts: Arc<ControlFacts>,
        poke: Arc<Notify>,
    ) -> FactsPublisher {
        FactsPublisher {
            nats,
            prefix: prefix.to_owned(),
            bucket: layout::bucket(prefix),
            facts,
            poke,
            passes: Arc::default(),
        }
    }

    /// Runs until `shutdown`, and answers gateways' issuer refresh
    /// requests meanwhile.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(refresh::serve(
            self.nats.clone(),
            self.prefix.clone(),
            self.facts.clone(),
            self.poke.clone(),
            self.passes.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(async move {
            let mut published: Option<Published> = None;
            loop {
                self.passes.start();
                let result = self.pass(&mut published).await;
                self.passes.finish();
                match result {
                    Ok(()) => {}
                    Err(e) => {
                        metrics::counter!(FACTS_PUBLISH_FAILURES_TOTAL).increment(1);
                        tracing::warn!(error = %format!("{e:#}"), "cannot publish the facts to NATS; retrying");
                        // What the bucket holds is unknown now.
                        published = None;
                    }
                }
                let wait = if published.is_some() { PERIOD } else { RETRY };
                tokio::select! {
                    _ = self.poke.notified() => {}
                    // A server that lost its store must not wait for the period.
                    _ = self.nats.reconnected() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }

    async fn pass(&self, published: &mut Option<Published>) -> anyhow::Result<()> {
        if published
            .as_ref()
            .is_some_and(|p| p.connects != self.nats.connects())
        {
            // A reconnect: the server may have lost (or be another) store.
            *published = None;
        }
        let wanted = layout::entries(&self.facts.read().await?)?;
        let current = match published {
            Some(p) => p,
            None => {
                let connects = self.nats.connects();
                let store = self.bucket().await?;
                let entries = read_all(&store).await?;
                published.insert(Published {
                    store,
                    entries,
                    connects,
                })
            }
        };
        for (key, value) in &wanted {
            // A trace rides along with a change, never makes one.
            let fact = layout::untraced(value);
            if current.entries.get(key) != Some(&fact) {
                current
                    .store
                    .put(key, value.clone().into())
                    .await
                    .map_err(|e| anyhow::anyhow!("put {key}: {e}"))?;
                current.entries.insert(key.clone(), fact);
                metrics::counter!(FACTS_PUBLISHED_TOTAL, "op" => "put").increment(1);
            }
        }
        let gone: Vec<String> = current
            .entries
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            current
                .store
                .delete(&key)
                .await
                .map_err(|e| anyhow::anyhow!("delete {key}: {e}"))?;
            current.entries.remove(&key);
            metrics::counter!(FACTS_PUBLISHED_TOTAL, "op" => "delete").increment(1);
        }
        // Read back, not counted from the puts: deletes take revisions too.
        let stream = self
            .nats
            .jetstream()
            .get_stream(format!("KV_{}", self.bucket))
            .await
            .map_err(|e| anyhow::anyhow!("the facts bucket's revision: {e}"))?;
        metrics::gauge!(FACTS_PUBLISHED_REVISION)
            .set(stream.cached_info().state.last_sequence as f64);
        Ok(())
    }

    /// The facts bucket, made if missing (one value per key: a fact's
    /// history is of no use to anyone).
    async fn bucket(&self) -> anyhow::Result<kv::Store> {
        let js = self.nats.jetstream();
        let replicas = self.nats.replicas().await?;
        match js.get_key_value(&self.bucket).await {
            Ok(store) => {
                aerie_cluster::replicas::raise(&js, &format!("KV_{}", self.bucket), replicas).await;
                Ok(store)
            }
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: self.bucket.clone(),
                    description: "Aerie: the control plane's facts for the gateways".into(),
                    history: 1,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the KV bucket {}: {e}", self.bucket)),
        }
    }
}

/// What the publisher believes the bucket holds.
struct Published {
    store: kv::Store,
    /// Each value without its `traceparent` ([`layout::untraced`]).
    entries: BTreeMap<String, Vec<u8>>,
    /// [`Nats::connects`] when it was read.
    connects: u64,
}

/// Every live key of `store` with its value.
async fn read_all(store: &kv::Store) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut entries = BTreeMap::new();
    let mut keys = store
        .keys()
        .await
        .map_err(|e| anyhow::anyhow!("list the facts keys: {e}"))?;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| anyhow::anyhow!("list the facts keys: {e}"))?;
        if let Some(value) = store
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("get {key}: {e}"))?
        {
            entries.insert(key, layout::untraced(&value));
        }
    }
    Ok(entries)
}
