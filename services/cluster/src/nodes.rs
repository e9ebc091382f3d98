//! Which gateways are alive: each node puts its own key into the bucket
//! `<prefix>_nodes` every [`HEARTBEAT`], and the bucket forgets a key
//! [`NODE_TTL`] after its last put (the bucket's `max_age`). A node killed
//! without a word is gone from it within that time. Each node watches the
//! bucket (one consumer for its life; listing the keys makes a consumer
//! each time, which JetStream keeps 30 s) and counts as alive the nodes it
//! heard within [`NODE_TTL`] by its own clock. Each node also answers
//! on its own subject `<prefix>.alive.<node>`, so that a node missing from
//! the bucket can be confirmed gone ([`Nodes::gone`]): NATS answers "no
//! responders" once its connection is closed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use futures_util::StreamExt;

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
/// How long a broken watch of the bucket waits before it is made again.
const REWATCH: Duration = Duration::from_secs(1);
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
    heard: Arc<Mutex<Heard>>,
}

/// The heartbeats heard through the watch of the bucket, by this node's
/// clock (no two clocks are compared).
#[derive(Default)]
struct Heard {
    at: HashMap<Arc<str>, Instant>,
    /// The watch has delivered every node's last word: the set is whole.
    current: bool,
}

impl Heard {
    fn beat(&mut self, entry: &kv::Entry) {
        let node: Arc<str> = Arc::from(entry.key.as_str());
        match entry.operation {
            kv::Operation::Put => {
                self.at.insert(node, Instant::now());
            }
            // Stopped cleanly: gone at once.
            kv::Operation::Delete | kv::Operation::Purge => {
                self.at.remove(&node);
            }
        }
        // The last of the history, or a new word: caught up.
        if entry.delta == 0 {
            self.current = true;
        }
    }

    /// The nodes heard within [`NODE_TTL`] (the others are forgotten).
    fn alive(&mut self) -> HashSet<Arc<str>> {
        self.at.retain(|_, at| at.elapsed() <= NODE_TTL);
        self.at.keys().cloned().collect()
    }
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
            heard: Arc::default(),
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
    /// answers on its own subject and watches the others' meanwhile.
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
        tokio::spawn(watch(self.kv.clone(), self.heard.clone(), stop.clone()));
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

    /// The nodes heard within [`NODE_TTL`] (this one among them once its
    /// first heartbeat came back); Err while the watch has not caught up
    /// (starting, or made again after NATS went away).
    pub async fn alive(&self) -> Result<HashSet<Arc<str>>, String> {
        let mut heard = self.heard.lock();
        if !heard.current {
            return Err("the live nodes are not known yet".to_owned());
        }
        Ok(heard.alive())
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

/// Follows the bucket into `heard` until `stop`, made again when it breaks.
async fn watch(kv: kv::Store, heard: Arc<Mutex<Heard>>, stop: CancellationToken) {
    loop {
        match kv.watch_with_history(">").await {
            Ok(mut beats) => loop {
                let beat = tokio::select! {
                    b = beats.next() => b,
                    () = stop.cancelled() => return,
                };
                match beat {
                    Some(Ok(entry)) => heard.lock().beat(&entry),
                    _ => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch the live nodes; retrying"),
        }
        heard.lock().current = false;
        tokio::select! {
            () = tokio::time::sleep(REWATCH) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, operation: kv::Operation, delta: u64) -> kv::Entry {
        kv::Entry {
            bucket: "p_nodes".into(),
            key: node.into(),
            value: bytes::Bytes::new(),
            revision: 1,
            delta,
            created: async_nats::datetime::from_nanos(0).expect("the epoch"),
            operation,
            seen_current: delta == 0,
        }
    }

    fn nodes(names: &[&str]) -> HashSet<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_counts_as_alive_while_its_heartbeats_are_heard() {
        let mut heard = Heard::default();
        heard.beat(&entry("gw-a", kv::Operation::Put, 1));
        assert!(!heard.current, "the history is still coming");
        heard.beat(&entry("gw-b", kv::Operation::Put, 0));
        assert!(heard.current);
        assert_eq!(heard.alive(), nodes(&["gw-a", "gw-b"]));
        tokio::time::sleep(NODE_TTL - Duration::from_secs(1)).await;
        heard.beat(&entry("gw-b", kv::Operation::Put, 0));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            heard.alive(),
            nodes(&["gw-b"]),
            "gw-a silent longer than the TTL"
        );
        heard.beat(&entry("gw-b", kv::Operation::Purge, 0));
        assert!(heard.alive().is_empty(), "gw-b stopped cleanly");
    }
}
