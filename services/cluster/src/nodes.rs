//! Which gateways are alive: each node puts its own key into the bucket
//! `<prefix>_nodes` every [`HEARTBEAT`], and the bucket forgets a key
//! [`NODE_TTL`] after its last put (the bucket's `max_age`). A node killed
//! without a word is gone from it within that time. Each node also answers
//! on its own subject `<prefix>.alive.<node>`, so that a node missing from
//! the bucket can be confirmed gone ([`Nodes::gone`]): NATS answers "no
//! responders" once its connection is closed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use crate::kv_cas::open_bucket;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node counts as alive after it last said so: five missed
/// heartbeats. Short enough that survivors publish a dead node's wills
/// within 10 s after their delay (`survivors.rs`: this, plus their 1 s
/// look, plus the time to publish), long enough that a node slowed for a
/// few seconds is not declared dead (and survivors ask it before acting).
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How long the list of live nodes may take to arrive.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node asked whether it is still there may take to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

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
    client: async_nats::Client,
    prefix: Arc<str>,
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
        Nodes {
            kv,
            me,
            client: js.client(),
            prefix: Arc::from(prefix),
        }
    }

    /// The subject `node` answers on while it lives.
    fn ping_subject(&self, node: &str) -> String {
        format!("{}.alive.{node}", self.prefix)
    }

    pub fn me(&self) -> &Arc<str> {
        &self.me
    }

    /// Says this node is alive now, and then every [`HEARTBEAT`] until `stop`;
    /// answers on its own subject meanwhile.
    pub async fn spawn_heartbeat(&self, stop: CancellationToken) {
        match self.client.subscribe(self.ping_subject(&self.me)).await {
            Ok(mut pings) => {
                let (client, stop) = (self.client.clone(), stop.clone());
                tokio::spawn(async move {
                    loop {
                        let ping = tokio::select! {
                            p = pings.next() => match p { Some(p) => p, None => break },
                            () = stop.cancelled() => break,
                        };
                        if let Some(reply) = ping.reply {
                            let _ = client.publish(reply, bytes::Bytes::new()).await;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot answer on this node's subject"),
        }
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
        tokio::time::timeout(ALIVE_TIMEOUT, keys)
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()))
    }

    /// Whether `node` is gone for certain: asked on its subject, NATS says
    /// nobody listens there (its connection is closed). A node that
    /// answers, or an answer that does not come, says no.
    pub async fn gone(&self, node: &str) -> bool {
        let ask = self
            .client
            .request(self.ping_subject(node), bytes::Bytes::new());
        match tokio::time::timeout(PING_TIMEOUT, ask).await {
            Ok(Err(e)) => e.kind() == async_nats::client::RequestErrorKind::NoResponders,
            Ok(Ok(_)) | Err(_) => false,
        }
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
