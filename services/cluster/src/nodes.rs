//! Which gateways are alive: each node puts its own key into the bucket
//! `<prefix>_nodes` every [`HEARTBEAT`], and the bucket forgets a key
//! [`NODE_TTL`] after its last put (the bucket's `max_age`). A node killed
//! without a word is gone from it within that time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use crate::kv_cas::open_bucket;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node counts as alive after it last said so.
pub const NODE_TTL: Duration = Duration::from_secs(8);

/// This node's name in the cluster: the `--node-id` plus a per-process
/// suffix, so a gateway restarted under the same id is a new node (what
/// the old process held is not mistaken for the new one's).
pub fn incarnation(node_id: &str) -> Arc<str> {
    Arc::from(format!(
        "{}-{:08x}",
        crate::kv_key::token(node_id),
        rand::random::<u32>()
    ))
}

/// The name of the bucket of live nodes.
pub(crate) fn bucket(prefix: &str) -> String {
    format!("{prefix}_nodes")
}

/// The bucket of live nodes.
#[derive(Clone)]
pub struct Nodes {
    kv: kv::Store,
    me: Arc<str>,
}

impl Nodes {
    /// Opens (or makes) the bucket; waits for NATS as long as it takes.
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        me: Arc<str>,
        replicas: usize,
    ) -> Nodes {
        let kv = open_bucket(
            js,
            kv::Config {
                bucket: bucket(prefix),
                description: "Aerie: the gateways alive now".into(),
                history: 1,
                max_age: NODE_TTL,
                ..Default::default()
            },
            replicas,
        )
        .await;
        Nodes { kv, me }
    }

    pub fn me(&self) -> &Arc<str> {
        &self.me
    }

    /// Says this node is alive now, and then every [`HEARTBEAT`] until `stop`.
    pub async fn spawn_heartbeat(&self, stop: CancellationToken) {
        self.beat().await;
        let nodes = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    _ = tick.tick() => nodes.beat().await,
                    () = stop.cancelled() => break,
                }
            }
            // A node that stops cleanly is gone at once.
            let _ = nodes.kv.purge(&*nodes.me).await;
        });
    }

    async fn beat(&self) {
        if let Err(e) = self.kv.put(&*self.me, bytes::Bytes::new()).await {
            tracing::warn!(error = %e, "cannot say this node is alive");
        }
    }

    /// The nodes that said they were alive within [`NODE_TTL`] (this one
    /// among them once it has); Err when NATS did not answer.
    pub async fn alive(&self) -> Result<HashSet<Arc<str>>, String> {
        let keys = async {
            let keys = self.kv.keys().await.map_err(|e| e.to_string())?;
            keys.map_ok(Arc::from)
                .try_collect::<HashSet<Arc<str>>>()
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(HEARTBEAT, keys)
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()))
    }

    /// Whether `node` said it was alive within [`NODE_TTL`]. An error
    /// reading says yes: a node is declared dead only on evidence.
    pub async fn is_alive(&self, node: &str) -> bool {
        match self.kv.entry(node).await {
            Ok(entry) => entry.is_some_and(|e| e.operation == kv::Operation::Put),
            Err(_) => true,
        }
    }
}
