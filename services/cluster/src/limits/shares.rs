//! How `ClusterConnections` keeps this node's shares of the tenant-wide
//! rates: the publish rates' from the counts (this node's writes, the
//! other nodes' through a watch of the bucket, the dead dropped), the
//! connect rate's from the live nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use aerie_core::quota::WHOLE_SHARE;
use aerie_core::{Broker, Tenant};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Inner, NODES_ALIVE, RESYNC, SHARE_CHANGES_TOTAL};
use crate::counts::{Counts, NodeCount};
use crate::kv_key::id_of;
use crate::rate_share::publish_share;

impl Inner {
    /// Sets `tenant`'s share of its publish rates on this node, with
    /// `mine` here and `others` on the other live nodes (`rate_share.rs`).
    pub(super) fn rebalance(&self, tenant: &Tenant, mine: NodeCount, others: &Counts) {
        let share = publish_share(mine, others);
        if tenant.quota().set_publish_share(share) {
            metrics::counter!(SHARE_CHANGES_TOTAL).increment(1);
            let part = f64::from(share) / f64::from(WHOLE_SHARE);
            tracing::debug!(tenant = %tenant.id, part, ?mine, others = ?others.0, "publish rates rebalanced");
        }
    }

    /// This node's part of `tenant` as the other nodes know it: its live
    /// connections, and the demand it announced.
    fn mine(&self, tenant: &Tenant) -> NodeCount {
        NodeCount {
            connections: tenant.quota().live_connections(),
            demand: self.announced.lock().get(&tenant.id).copied().unwrap_or(0),
        }
    }

    /// The publish demand last measured here for `tenant`.
    pub(super) fn demand_of(&self, tenant: &str) -> u32 {
        self.demand.lock().get(tenant).copied().unwrap_or(0)
    }

    /// Measures the publish demand of the tenants this node counts whose
    /// publish rates are limited: the PUBLISHes checked since the last
    /// [`RESYNC`], a second.
    pub(super) fn measure_demand(&self, broker: &Broker) {
        let ids: Vec<Arc<str>> = self.written.lock().keys().cloned().collect();
        for id in ids {
            let Some(tenant) = broker.existing_tenant(&id) else {
                continue;
            };
            let l = tenant.quota().limits();
            if l.publish_rate_msgs == u32::MAX && l.publish_rate_bytes == u64::MAX {
                continue;
            }
            let per_second = tenant
                .quota()
                .publish_attempts()
                .div_ceil(RESYNC.as_secs().max(1));
            let demand = u32::try_from(per_second).unwrap_or(u32::MAX);
            self.demand.lock().insert(id, demand);
        }
    }

    /// Sets this node's share of the connect rates: one of the live nodes'
    /// (this one counted even before its first heartbeat shows). Kept as
    /// it was when NATS does not answer.
    pub(super) async fn share_connects(&self) {
        let Ok(mut alive) = self.nodes.alive().await else {
            return;
        };
        alive.insert(self.nodes.me().clone());
        metrics::gauge!(NODES_ALIVE).set(alive.len() as f64);
        let parts = WHOLE_SHARE / u32::try_from(alive.len()).unwrap_or(u32::MAX);
        if self.connect_share.swap(parts, Relaxed) != parts {
            metrics::counter!(SHARE_CHANGES_TOTAL).increment(1);
            tracing::info!(
                nodes = alive.len(),
                "connect rates shared between the live gateways"
            );
        }
    }

    /// Follows the other nodes' counts: each change of a tenant this node
    /// has rebalances its share here. Reopened when the watch ends (NATS
    /// went away); a change missed meanwhile is caught by this node's next
    /// write of the tenant's count.
    pub(super) async fn watch(self: Arc<Self>, broker: Broker, stop: CancellationToken) {
        loop {
            match self.kv.watch_all().await {
                Ok(mut changes) => loop {
                    let change = tokio::select! {
                        change = changes.next() => change,
                        () = stop.cancelled() => return,
                    };
                    match change {
                        Some(Ok(entry)) => self.seen(&broker, entry).await,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the watch of connection counts failed; reopening it");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the connection counts; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RESYNC) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// A count of a tenant as written by some node (this one included).
    async fn seen(&self, broker: &Broker, entry: kv::Entry) {
        let Some(tenant) = id_of(&entry.key).and_then(|id| broker.existing_tenant(&id)) else {
            return;
        };
        let mut counts = match entry.operation {
            kv::Operation::Put => Counts::decode(&entry.value),
            _ => Counts::default(),
        };
        counts.0.remove(self.nodes.me());
        self.drop_dead(&mut counts).await;
        self.rebalance(&tenant, self.mine(&tenant), &counts);
        self.others.lock().insert(tenant.id.clone(), counts);
    }

    /// Drops the counts of nodes that died since they were seen, and gives
    /// their part of the rates to the live ones.
    pub(super) async fn drop_dead_shares(&self, broker: &Broker) {
        let seen: Vec<(Arc<str>, Counts)> = self
            .others
            .lock()
            .iter()
            .filter(|(_, counts)| !counts.0.is_empty())
            .map(|(id, counts)| (id.clone(), counts.clone()))
            .collect();
        for (id, mut counts) in seen {
            let before = counts.0.len();
            self.drop_dead(&mut counts).await;
            if counts.0.len() == before {
                continue;
            }
            match broker.existing_tenant(&id) {
                Some(tenant) => {
                    self.rebalance(&tenant, self.mine(&tenant), &counts);
                    self.others.lock().insert(id, counts);
                }
                None => {
                    self.others.lock().remove(&id);
                }
            }
        }
    }
}
