//! Owner keys of dead nodes. A session whose gateway died and whose client
//! never comes back would keep its key in `<prefix>_owners` for ever: the
//! live node whose name sorts first sweeps every [`SWEEP`], deleting each
//! key whose node was alive neither at this sweep nor at the one before
//! (so a node cut off from NATS for less than a sweep keeps its keys), at
//! the revision it read: a claim written meanwhile (the client back on a
//! live gateway) is never removed. A node whose keys were swept while it
//! was cut off claims them again when it reconnects (`owners.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::nodes::Nodes;
use crate::owners::{NatsOwners, Owner};

/// How often the first live node sweeps.
pub const SWEEP: Duration = Duration::from_secs(30);
/// Owner keys of dead nodes deleted.
pub const STALE_OWNERS_REMOVED_TOTAL: &str = "aerie_cluster_stale_owners_removed_total";

/// The longest wait for the next owner key while reading them all.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl NatsOwners {
    /// Every [`SWEEP`] until `stop`: if this node sorts first of the live
    /// `nodes`, removes the owner keys of nodes dead since the sweep before.
    pub fn spawn_sweep(&self, nodes: Nodes, stop: CancellationToken) {
        let owners = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            let mut rounds = Rounds::new(nodes.me().clone());
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                // NATS not answering: nothing is known dead.
                let Ok(alive) = nodes.alive().await else {
                    continue;
                };
                let Some((alive, before)) = rounds.next(alive) else {
                    continue;
                };
                match owners.sweep(&alive, &before).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "owner keys of dead gateways removed"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot sweep the owners of dead gateways")
                    }
                }
            }
        });
    }

    /// Deletes the owner keys whose node is in neither `alive` nor
    /// `before`, each only at the revision read; how many were.
    pub async fn sweep(
        &self,
        alive: &HashSet<Arc<str>>,
        before: &HashSet<Arc<str>>,
    ) -> Result<usize, String> {
        let stale = self.stale(alive, before).await?;
        Ok(self.remove(stale).await)
    }

    /// The keys (and their revisions) whose node is in neither `alive` nor
    /// `before`.
    pub async fn stale(
        &self,
        alive: &HashSet<Arc<str>>,
        before: &HashSet<Arc<str>>,
    ) -> Result<Vec<(String, u64)>, String> {
        let dead = |node: &Arc<str>| !alive.contains(node) && !before.contains(node);
        Ok(current(self.kv())
            .await?
            .into_iter()
            .filter(|e| Owner::decode(&e.value).is_some_and(|o| dead(&o.node)))
            .map(|e| (e.key, e.revision))
            .collect())
    }

    /// Deletes each key still at its revision (a claim since moved it);
    /// how many were.
    pub async fn remove(&self, stale: Vec<(String, u64)>) -> usize {
        let mut removed = 0;
        for (key, revision) in stale {
            match self.kv().delete_expect_revision(&key, Some(revision)).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::debug!(%key, error = %e, "owner key not swept (claimed since)"),
            }
        }
        metrics::counter!(STALE_OWNERS_REMOVED_TOTAL).increment(removed as u64);
        removed
    }
}

/// Node names.
type NodeSet = HashSet<Arc<str>>;

/// Whether this node sweeps at each round, and against which live nodes.
struct Rounds {
    me: Arc<str>,
    /// The live nodes at the round before, if there was one.
    before: Option<NodeSet>,
}

impl Rounds {
    fn new(me: Arc<str>) -> Rounds {
        Rounds { me, before: None }
    }

    /// With the nodes `alive` now: the sets to sweep against (now, and the
    /// round before), if this node is the one to sweep (the first of the
    /// live nodes by name) and a round before is known.
    fn next(&mut self, mut alive: NodeSet) -> Option<(NodeSet, NodeSet)> {
        // Before its first heartbeat shows, this node is alive all the same.
        alive.insert(self.me.clone());
        let first = alive.iter().min() == Some(&self.me);
        let before = self.before.replace(alive.clone())?;
        first.then_some((alive, before))
    }
}

/// Every key of `kv` that has a value now, with its revision.
pub(crate) async fn current(kv: &kv::Store) -> Result<Vec<kv::Entry>, String> {
    // Asked now (the store's status is what it was when opened).
    let mut stream = kv.stream.clone();
    let info = stream.info().await.map_err(|e| e.to_string())?;
    if info.state.messages == 0 {
        // A watch of an empty bucket would wait for its first write.
        return Ok(Vec::new());
    }
    let mut entries = kv
        .watch_with_history(">")
        .await
        .map_err(|e| e.to_string())?;
    let mut live = Vec::new();
    loop {
        let entry = tokio::time::timeout(READ_TIMEOUT, entries.next())
            .await
            .map_err(|_| "the owners did not arrive in time".to_owned())?
            .ok_or("the owners' watch ended")?
            .map_err(|e| e.to_string())?;
        let last = entry.delta == 0;
        if entry.operation == kv::Operation::Put {
            live.push(entry);
        }
        if last {
            return Ok(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> HashSet<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn the_first_live_node_sweeps_from_its_second_round_on() {
        let mut first = Rounds::new(Arc::from("gw-a"));
        let mut second = Rounds::new(Arc::from("gw-b"));
        let alive = nodes(&["gw-a", "gw-b", "gw-c"]);
        assert!(first.next(alive.clone()).is_none(), "no round before yet");
        assert!(second.next(alive.clone()).is_none());
        let (now, before) = first.next(nodes(&["gw-a", "gw-b"])).expect("sweeps");
        assert_eq!(now, nodes(&["gw-a", "gw-b"]));
        assert_eq!(before, alive, "gw-c was alive a round ago: spared");
        assert!(second.next(nodes(&["gw-a", "gw-b"])).is_none(), "not first");
        // gw-a gone: gw-b is first now.
        assert!(second.next(nodes(&["gw-b"])).is_some());
    }
}
