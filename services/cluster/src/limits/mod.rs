//! A tenant's connection limit across gateways. The bucket
//! `<prefix>_connections` holds one key per tenant whose value lists, per
//! live node, how many connections of the tenant that node holds (and its
//! publish demand: `counts.rs`). A
//! CONNECT is admitted if the other live nodes' counts plus this node's
//! (with the new one) stay within the limit, and this node's count is then
//! written with compare-and-set (a concurrent write on another node makes
//! it read and decide again), so two gateways cannot both take the last
//! slot. A disconnect writes the lower count afterwards, and every
//! [`RESYNC`] each node writes again any count that differs from what it
//! holds (a write that failed), and its demand when it changed by more
//! than a quarter. A node missing from `<prefix>_nodes` (dead
//! for [`crate::nodes::NODE_TTL`]) counts for nothing and is dropped from
//! the value by the next write.
//!
//! Tolerance: the limit is exact while NATS answers, except that a dead
//! node's connections hold their slots until its heartbeat expires (at
//! most `NODE_TTL` plus [`ALIVE_CACHE`]). When NATS does not answer, a
//! gateway admits on its own count (availability over the limit), counted
//! in [`COUNT_ERRORS_TOTAL`]. Tenants with neither a connection limit nor
//! a tenant-wide rate are not counted in NATS at all (nothing to enforce,
//! no round trip on their CONNECT); those with rates only are counted
//! without the CONNECT waiting for it.
//!
//! The tenant-wide rates are shared between the gateways. The publish
//! rates (messages and bytes) by these counts: each node checks them at its
//! part of the tenant's publish demand cluster-wide, or of its connections
//! while none publishes (`rate_share.rs`, `Quota::set_publish_share`),
//! rebalanced whenever a count changes (this node's own writes, and a
//! watch of the bucket for the others'), and when a node whose count was
//! seen dies; a node that does not know the tenant yet allows the whole
//! rate until its first count is written (one CONNECT's round trips). The
//! connect rate evenly, one part per live node (a load balancer spreads
//! CONNECTs, not connections), as counted in `<prefix>_nodes` every
//! [`RESYNC`]. Either share lets one unit a second through at least (the
//! floor in `core::quota`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use aerie_core::quota::{ConnectionSlot, TenantConnections, WHOLE_SHARE, try_connection};
use aerie_core::seams::BoxFuture;
use aerie_core::{Broker, Tenant};
use async_nats::jetstream::{self, kv};
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::counts::{Counts, NodeCount};
use crate::kv_cas::{CasError, open_bucket, write_if_unchanged};
use crate::kv_key::token;
use crate::nodes::Nodes;
use crate::rate_share::demand_changed;

mod shares;

/// Reads or writes of the cluster-wide count that failed (the CONNECT was
/// admitted on this node's count alone).
pub const COUNT_ERRORS_TOTAL: &str = "aerie_cluster_connection_count_errors_total";
/// Compare-and-set rounds of the count that lost to another node's write.
pub const COUNT_CONFLICTS_TOTAL: &str = "aerie_cluster_connection_count_conflicts_total";

/// Changes of this node's share of a tenant's publish rates, or of every
/// tenant's connect rate.
pub const SHARE_CHANGES_TOTAL: &str = "aerie_cluster_rate_share_changes_total";

/// The gateways alive now, as this node last counted them.
pub const NODES_ALIVE: &str = "aerie_cluster_nodes_alive";

/// How often counts that differ from what was last written are written again.
pub const RESYNC: Duration = Duration::from_secs(2);
/// How long a node seen alive is believed alive without asking again.
pub const ALIVE_CACHE: Duration = Duration::from_secs(2);
/// Compare-and-set rounds before falling back to this node's count.
const MAX_ROUNDS: usize = 16;

/// The scale-out shape's [`TenantConnections`].
#[derive(Clone)]
pub struct ClusterConnections {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnections")
            .field("node", self.inner.nodes.me())
            .finish_non_exhaustive()
    }
}

struct Inner {
    kv: kv::Store,
    nodes: Nodes,
    /// One count update of a tenant at a time on this node (they would only
    /// conflict with each other).
    turns: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
    /// What this node last wrote per tenant.
    written: Mutex<HashMap<Arc<str>, NodeCount>>,
    /// The publish demand measured here per tenant (PUBLISHes a second),
    /// written when it changed enough.
    demand: Mutex<HashMap<Arc<str>, u32>>,
    /// The demand this node is writing or wrote last per tenant: what its
    /// share is reckoned with (set before the write, whose echo through the
    /// watch may arrive before the write's answer).
    announced: Mutex<HashMap<Arc<str>, u32>>,
    /// Other nodes seen alive, until when that is believed.
    alive: Mutex<HashMap<Arc<str>, Instant>>,
    /// The other live nodes' counts per tenant, as last read: what this
    /// node's share of the tenant's publish rates is reckoned against.
    others: Mutex<HashMap<Arc<str>, Counts>>,
    /// This node's share of every tenant's connect rate: one live node's.
    connect_share: AtomicU32,
}

/// This node's connections of one tenant as counted cluster-wide; dropped
/// with the connection's slot, after which the lower count is written.
struct Lease {
    inner: Arc<Inner>,
    tenant: Arc<Tenant>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (inner, tenant) = (self.inner.clone(), self.tenant.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = inner.write_count(&tenant, None).await;
            });
        }
    }
}

impl ClusterConnections {
    /// Opens (or makes) the bucket; waits for NATS as long as it takes.
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        nodes: Nodes,
        replicas: usize,
    ) -> ClusterConnections {
        let kv = open_bucket(
            js,
            kv::Config {
                bucket: format!("{prefix}_connections"),
                description: "Aerie: each tenant's live connections per gateway".into(),
                history: 1,
                ..Default::default()
            },
            replicas,
        )
        .await;
        ClusterConnections {
            inner: Arc::new(Inner {
                kv,
                nodes,
                turns: Mutex::new(HashMap::new()),
                written: Mutex::new(HashMap::new()),
                demand: Mutex::new(HashMap::new()),
                announced: Mutex::new(HashMap::new()),
                alive: Mutex::new(HashMap::new()),
                others: Mutex::new(HashMap::new()),
                connect_share: AtomicU32::new(WHOLE_SHARE),
            }),
        }
    }

    /// Keeps the counts and the rate shares of `broker`'s tenants current
    /// until `stop`: watches the other nodes' counts, and every [`RESYNC`]
    /// counts the live nodes (the connect rate's share), writes again the
    /// counts that differ from what was last written and drops the counts
    /// of nodes that died since they were seen.
    pub fn spawn_upkeep(&self, broker: Broker, stop: CancellationToken) {
        tokio::spawn(self.inner.clone().watch(broker.clone(), stop.clone()));
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESYNC);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                inner.share_connects().await;
                inner.measure_demand(&broker);
                let stale: Vec<Arc<str>> = inner
                    .written
                    .lock()
                    .iter()
                    .filter(|(id, written)| match broker.existing_tenant(id) {
                        Some(t) => {
                            t.quota().live_connections() != written.connections
                                || demand_changed(written.demand, inner.demand_of(id))
                        }
                        None => true,
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in stale {
                    match broker.existing_tenant(&id) {
                        Some(tenant) => {
                            let _ = inner.write_count(&tenant, None).await;
                        }
                        None => inner.forget(&id).await,
                    }
                }
                inner.drop_dead_shares(&broker).await;
            }
        });
    }
}

impl TenantConnections for ClusterConnections {
    fn admit(&self, tenant: &Arc<Tenant>, takeover: bool) -> BoxFuture<Option<ConnectionSlot>> {
        let (inner, tenant) = (self.inner.clone(), tenant.clone());
        Box::pin(async move {
            // This node's own count first: it is part of the cluster's.
            let slot = try_connection(&tenant, takeover)?;
            if !tenant.quota().limited_tenant_wide() {
                return Some(slot);
            }
            let limit = tenant.quota().limits().connections;
            if limit == u32::MAX {
                // Counted for the rates' shares only: the CONNECT need not wait.
                let (writer, counted) = (inner.clone(), tenant.clone());
                tokio::spawn(async move {
                    let _ = writer.write_count(&counted, None).await;
                });
                return Some(slot.with_lease(Lease { inner, tenant }));
            }
            let within = if takeover { None } else { Some(limit) };
            match inner.write_count(&tenant, within).await {
                Ok(true) => Some(slot.with_lease(Lease { inner, tenant })),
                // Over the limit: the slot goes back (and nothing was written).
                Ok(false) => None,
                Err(()) => Some(slot.with_lease(Lease { inner, tenant })),
            }
        })
    }

    fn connect_rate_share(&self) -> u32 {
        self.inner.connect_share.load(Relaxed)
    }
}

impl Inner {
    fn turn(&self, tenant: &Arc<str>) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.lock().entry(tenant.clone()).or_default().clone()
    }

    /// Writes this node's count of `tenant` (its live connections now),
    /// unless `within` is given and the cluster's count would pass it
    /// (then `Ok(false)`). `Err` when NATS did not answer.
    async fn write_count(&self, tenant: &Arc<Tenant>, within: Option<u32>) -> Result<bool, ()> {
        let turn = self.turn(&tenant.id);
        let _turn = turn.lock().await;
        let key = token(&tenant.id);
        let me = self.nodes.me().clone();
        for _ in 0..MAX_ROUNDS {
            let entry = self.kv.entry(key.as_str()).await.map_err(|e| {
                self.failed(&e.to_string());
            })?;
            let mut counts = entry
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put)
                .map(|e| Counts::decode(&e.value))
                .unwrap_or_default();
            counts.0.remove(&me);
            self.drop_dead(&mut counts).await;
            let mine = NodeCount {
                connections: tenant.quota().live_connections(),
                demand: self.demand_of(&tenant.id),
            };
            self.announced.lock().insert(tenant.id.clone(), mine.demand);
            self.rebalance(tenant, mine, &counts);
            self.others.lock().insert(tenant.id.clone(), counts.clone());
            let cluster = counts.connections().saturating_add(mine.connections);
            if within.is_some_and(|limit| cluster > limit) {
                return Ok(false);
            }
            if mine.connections > 0 {
                counts.0.insert(me.clone(), mine);
            }
            let value = counts.encode();
            match write_if_unchanged(&self.kv, &key, entry.as_ref(), value).await {
                Ok(_) => {
                    self.written.lock().insert(tenant.id.clone(), mine);
                    return Ok(true);
                }
                Err(CasError::Conflict) => metrics::counter!(COUNT_CONFLICTS_TOTAL).increment(1),
                Err(CasError::Failed(e)) => {
                    self.failed(&e);
                    return Err(());
                }
            }
        }
        self.failed("contended");
        Err(())
    }

    fn failed(&self, error: &str) {
        metrics::counter!(COUNT_ERRORS_TOTAL).increment(1);
        tracing::warn!(%error, "cannot update the cluster-wide connection count; this gateway's own count applies");
    }

    /// Removes the counts of nodes that are no longer alive.
    async fn drop_dead(&self, counts: &mut Counts) {
        let now = Instant::now();
        let nodes: Vec<Arc<str>> = counts.0.keys().cloned().collect();
        for node in nodes {
            let believed = self
                .alive
                .lock()
                .get(&node)
                .is_some_and(|until| *until > now);
            if believed {
                continue;
            }
            if self.nodes.is_alive(&node).await {
                self.alive.lock().insert(node, now + ALIVE_CACHE);
            } else {
                self.alive.lock().remove(&node);
                counts.0.remove(&node);
            }
        }
    }

    /// A tenant this node no longer has: its count here is zero.
    async fn forget(&self, tenant: &Arc<str>) {
        self.written.lock().remove(tenant);
        self.demand.lock().remove(tenant);
        self.announced.lock().remove(tenant);
        self.others.lock().remove(tenant);
        let key = token(tenant);
        let Ok(Some(entry)) = self.kv.entry(key.as_str()).await else {
            return;
        };
        let mut counts = Counts::decode(&entry.value);
        if counts.0.remove(self.nodes.me()).is_some() {
            let _ = self
                .kv
                .update(key.as_str(), counts.encode(), entry.revision)
                .await;
        }
    }
}
