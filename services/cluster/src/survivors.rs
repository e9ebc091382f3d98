//! What a dead gateway left undone, done by the gateways that live: the
//! wills of its connections published (`wills.rs` keeps them) and its
//! persistent sessions expired.
//!
//! - **A death**: every [`SCAN`], a node this one saw alive before and
//!   that is missing from the live nodes now (`nodes.rs`: not heard for
//!   [`crate::nodes::NODE_TTL`], or stopped cleanly) is asked on its own
//!   subject, and only NATS's "no responders" (its connection is closed)
//!   declares it dead. It died no later than the last look at which it
//!   still counted as alive: delays and expiries are counted from then, so
//!   a will is never published early, and at most the TTL plus a scan
//!   late. Nodes that died while no survivor watched (named in the
//!   buckets, missing from the live ones, confirmed gone) are found by the
//!   live node whose name sorts first, at its first look and every
//!   [`RESCAN`], and counted dead from then. A will whose connection had
//!   closed before the death counts its delay from that close (the time
//!   it was kept with).
//! - **Its wills**: each will it kept is published after its delay (at
//!   most its session's expiry) through this node's core, so it is routed
//!   over the backbone and appended to the tenant's log like any PUBLISH.
//!   **Exactly once**, even when survivors race: each deletes the will's
//!   key at the revision it read, and only the one whose delete succeeded
//!   publishes (a survivor killed between its delete and its publish loses
//!   the will: at most once, never twice). A client that connected again
//!   meanwhile (its owner key names another node) cancels the will, as
//!   MQTT 5 §3.1.2.5 says; its new connection removes or replaces it too.
//! - **Its persistent sessions** (owner keys naming it, `owners.rs`): the
//!   record in `<prefix>_sessions` is purged once its expiry has passed
//!   since the death (or since the session's detach, if it was detached
//!   before), at the revision read, so a resume meanwhile (which rewrote
//!   it) wins; the owner key goes with it (at its revision), rather than at
//!   the next sweep of `stale_owners.rs`. The owner keys of its sessions
//!   that left no record (clean sessions, ended with it) go at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aerie_core::Broker;
use aerie_core::store::unix_ms_now;
use async_nats::jetstream::{self, kv};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::kv_cas::{CasError, open_bucket, purge_at_revision};
use crate::kv_key::id_of;
use crate::nodes::Nodes;
use crate::owners::{NatsOwners, Owner};
use crate::stale_owners::current;
use crate::wills::{self, Kept, KvWills};

/// How often a node looks for dead nodes and for what is due.
pub const SCAN: Duration = Duration::from_secs(1);
/// How often the first live node looks through the buckets for nodes that
/// died while no survivor watched.
pub const RESCAN: Duration = Duration::from_secs(30);
/// A dead node is forgotten this long after its death (its wills and
/// sessions are long done by then).
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

/// Nodes found dead by this node.
pub const DEAD_NODES_TOTAL: &str = "aerie_cluster_dead_nodes_total";
/// Wills of dead nodes published by this node.
pub const WILLS_PUBLISHED_TOTAL: &str = "aerie_cluster_wills_published_by_survivors_total";
/// Wills of dead nodes another survivor published first (or a new
/// connection replaced): this node did nothing.
pub const WILL_RACES_LOST_TOTAL: &str = "aerie_cluster_will_races_lost_total";
/// Persistent sessions of dead nodes expired by this node.
pub const SESSIONS_EXPIRED_TOTAL: &str = "aerie_cluster_sessions_expired_by_survivors_total";

/// What of a session record a survivor reads (`session_records.rs`).
#[derive(Deserialize)]
struct RecordExpiry {
    expiry: u32,
    /// Set when the session was detached (Unix ms).
    #[serde(default)]
    expires_at_ms: Option<u64>,
}

/// Something of a dead node's to do once due.
enum Task {
    /// Publish this will (read at the revision scheduled).
    Will(Box<Kept>),
    /// Purge the session record; the owner key too, at this revision.
    Session { owner_revision: u64 },
    /// Purge the owner key of a session that ended with its node (no
    /// record: a clean session).
    Owner,
}

struct Pending {
    revision: u64,
    due_ms: u64,
    task: Task,
}

/// Whether a due task is done (or must be tried again at the next scan).
enum Outcome {
    Done,
    Retry,
}

/// The buckets a survivor reads and the core it publishes through.
pub struct Survivors {
    nodes: Nodes,
    wills: kv::Store,
    owners: kv::Store,
    sessions: kv::Store,
    broker: Broker,
}

impl Survivors {
    /// Opens the session records' bucket too (made by `session_records.rs`
    /// if this node opened it first).
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        nodes: Nodes,
        owners: &NatsOwners,
        wills: &KvWills,
        broker: Broker,
        replicas: usize,
    ) -> Survivors {
        let sessions = open_bucket(
            js,
            kv::Config {
                bucket: crate::session_records::bucket(prefix),
                history: 1,
                ..Default::default()
            },
            replicas,
        )
        .await;
        Survivors {
            nodes,
            wills: wills.kv().clone(),
            owners: owners.kv().clone(),
            sessions,
            broker,
        }
    }

    /// Every [`SCAN`] until `stop`: finds dead nodes, and does what is due.
    pub fn spawn(self, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut lives = Lives::new(self.nodes.me().clone());
            let mut pending: HashMap<String, Pending> = HashMap::new();
            let mut tick = tokio::time::interval(SCAN);
            // The first look rescans: what died before this node started.
            let mut last_rescan: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                // The live nodes not known, or this node's own heartbeats
                // not heard (NATS away): nothing is known dead.
                let Ok(alive) = self.nodes.alive().await else {
                    continue;
                };
                if !alive.contains(lives.me()) {
                    continue;
                }
                let now = unix_ms_now();
                for (node, seen) in lives.missing(&alive, now) {
                    if self.nodes.gone(&node).await {
                        metrics::counter!(DEAD_NODES_TOTAL).increment(1);
                        tracing::info!(%node, "a gateway is gone; its wills and sessions are taken care of here");
                        lives.declare_dead(&node, seen);
                    }
                }
                let rescan =
                    last_rescan.is_none_or(|at| at.elapsed() >= RESCAN) && lives.first(&alive);
                if rescan {
                    last_rescan = Some(tokio::time::Instant::now());
                }
                if !lives.unscanned.is_empty() || rescan {
                    let dead = lives.unscanned.clone();
                    match self
                        .scan(&mut lives, dead, rescan.then_some(&alive), &mut pending)
                        .await
                    {
                        Ok(()) => lives.unscanned.clear(),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read what dead gateways left; trying again")
                        }
                    }
                }
                self.run_due(&mut pending).await;
            }
        });
    }

    /// Schedules the wills and sessions of the `dead` nodes (with a rescan,
    /// of every node the buckets name that is not `alive`).
    async fn scan(
        &self,
        lives: &mut Lives,
        mut dead: HashMap<Arc<str>, u64>,
        rescan: Option<&HashSet<Arc<str>>>,
        pending: &mut HashMap<String, Pending>,
    ) -> Result<(), String> {
        let wills = current(&self.wills).await?;
        let owners = current(&self.owners).await?;
        let kept: Vec<(kv::Entry, Kept)> = wills
            .into_iter()
            .filter_map(|e| Kept::decode(&e.value).map(|k| (e, k)))
            .collect();
        let owned: Vec<(kv::Entry, Owner)> = owners
            .into_iter()
            .filter_map(|e| Owner::decode(&e.value).map(|o| (e, o)))
            .collect();
        if let Some(alive) = rescan {
            let named: HashSet<Arc<str>> = kept
                .iter()
                .map(|(_, k)| k.node.clone())
                .chain(owned.iter().map(|(_, o)| o.node.clone()))
                .collect();
            let now = unix_ms_now();
            lives.forget(now);
            for node in named {
                if alive.contains(&node) {
                    continue;
                }
                if let Some(&died) = lives.dead.get(&node) {
                    dead.insert(node, died);
                } else if let Some(died) = lives.unknown(&node, now)
                    && self.nodes.gone(&node).await
                {
                    metrics::counter!(DEAD_NODES_TOTAL).increment(1);
                    tracing::info!(%node, "a gateway that died unwatched left wills or sessions; taken care of here");
                    lives.declare_dead(&node, died);
                    dead.insert(node, died);
                }
            }
        }
        for (entry, kept) in kept {
            let Some(&died) = dead.get(&kept.node) else {
                continue;
            };
            // Its delay counts from when its connection closed, if that
            // was before the death.
            let since = kept.waiting_since_ms.map_or(died, |t| t.min(died));
            let due_ms = since + u64::from(kept.delay()) * 1000;
            schedule(pending, entry.key, entry.revision, due_ms, || {
                Task::Will(Box::new(kept))
            });
        }
        for (owner, o) in owned {
            if !dead.contains_key(&o.node) {
                continue;
            }
            let died = dead[&o.node];
            let record = match self.sessions.entry(owner.key.as_str()).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => e,
                Ok(_) => {
                    // Nothing kept of it: its session ended with its node.
                    let key = task_key(OWNER_TASK, &owner.key);
                    schedule(pending, key, owner.revision, died, || Task::Owner);
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let Ok(r) = serde_json::from_slice::<RecordExpiry>(&record.value) else {
                continue;
            };
            let due_ms = match r.expires_at_ms {
                Some(at) => at,
                None if r.expiry == u32::MAX => continue,
                None => died + u64::from(r.expiry) * 1000,
            };
            let owner_revision = owner.revision;
            schedule(
                pending,
                task_key(SESSION_TASK, &owner.key),
                record.revision,
                due_ms,
                || Task::Session { owner_revision },
            );
        }
        Ok(())
    }

    /// Does every pending task that is due.
    async fn run_due(&self, pending: &mut HashMap<String, Pending>) {
        let now = unix_ms_now();
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.due_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for task_key in due {
            let Some(p) = pending.remove(&task_key) else {
                continue;
            };
            let outcome = match &p.task {
                Task::Will(kept) => self.publish_will(&task_key, p.revision, kept).await,
                Task::Session { owner_revision } => {
                    let key = task_key.strip_prefix(SESSION_TASK).unwrap_or(&task_key);
                    self.expire_session(key, p.revision, *owner_revision).await
                }
                Task::Owner => {
                    let key = task_key.strip_prefix(OWNER_TASK).unwrap_or(&task_key);
                    self.remove_owner(key, p.revision).await
                }
            };
            if matches!(outcome, Outcome::Retry) {
                pending.insert(task_key, p);
            }
        }
    }

    /// Publishes the will at `key` if this node wins it.
    async fn publish_will(&self, key: &str, revision: u64, kept: &Kept) -> Outcome {
        let Some((tenant, client_id)) = ids(key) else {
            tracing::warn!(%key, "a will under a key that names no client; left alone");
            return Outcome::Done;
        };
        // The client connected again elsewhere: that cancelled the will.
        match self.owners.entry(key).await {
            Ok(Some(e))
                if e.operation == kv::Operation::Put
                    && Owner::decode(&e.value).is_some_and(|o| o.node != kept.node) =>
            {
                if purge_at_revision(&self.wills, key, revision).await.is_ok() {
                    metrics::counter!(wills::CANCELLED_TOTAL).increment(1);
                    tracing::info!(%tenant, %client_id, "a dead gateway's will is cancelled: its client connected again");
                }
                return Outcome::Done;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%tenant, %client_id, %error, "cannot read a session owner; the will waits");
                return Outcome::Retry;
            }
        }
        match purge_at_revision(&self.wills, key, revision).await {
            Ok(()) => {
                self.broker
                    .tenant(&tenant)
                    .publish_kept_will(kept.will.clone());
                metrics::counter!(WILLS_PUBLISHED_TOTAL).increment(1);
                tracing::info!(%tenant, %client_id, node = %kept.node, topic = %kept.will.topic, "published the will of a dead gateway's client");
                Outcome::Done
            }
            Err(CasError::Conflict) => {
                metrics::counter!(WILL_RACES_LOST_TOTAL).increment(1);
                tracing::debug!(%tenant, %client_id, "a dead gateway's will was taken by another survivor");
                Outcome::Done
            }
            Err(CasError::Failed(error)) => {
                tracing::warn!(%tenant, %client_id, %error, "cannot take a dead gateway's will; trying again");
                Outcome::Retry
            }
        }
    }

    /// Purges the owner key at `key` if still at `revision` (a claim since
    /// moved it).
    async fn remove_owner(&self, key: &str, revision: u64) -> Outcome {
        match purge_at_revision(&self.owners, key, revision).await {
            Ok(()) => {
                metrics::counter!(crate::stale_owners::STALE_OWNERS_REMOVED_TOTAL).increment(1);
                Outcome::Done
            }
            Err(CasError::Conflict) => Outcome::Done,
            Err(CasError::Failed(error)) => {
                tracing::warn!(%key, %error, "cannot remove a dead gateway's owner key; trying again");
                Outcome::Retry
            }
        }
    }

    /// Purges the session record at `key` (and its owner key) if both are
    /// still as read.
    async fn expire_session(&self, key: &str, revision: u64, owner_revision: u64) -> Outcome {
        let (tenant, client_id) = ids(key).unwrap_or_default();
        match purge_at_revision(&self.sessions, key, revision).await {
            Ok(()) => {
                metrics::counter!(SESSIONS_EXPIRED_TOTAL).increment(1);
                tracing::info!(%tenant, %client_id, "expired a dead gateway's persistent session");
                // Still the dead node's claim: nobody holds the id now.
                let _ = purge_at_revision(&self.owners, key, owner_revision).await;
                Outcome::Done
            }
            Err(CasError::Conflict) => {
                tracing::debug!(%tenant, %client_id, "a dead gateway's session was resumed meanwhile");
                Outcome::Done
            }
            Err(CasError::Failed(error)) => {
                tracing::warn!(%tenant, %client_id, %error, "cannot expire a dead gateway's session; trying again");
                Outcome::Retry
            }
        }
    }
}

/// Session and owner tasks share the map with wills (whose task key is
/// the KV key): theirs is the KV key after one of these.
const SESSION_TASK: &str = "session:";
const OWNER_TASK: &str = "owner:";

fn task_key(kind: &str, key: &str) -> String {
    format!("{kind}{key}")
}

/// Schedules a task unless the same one (same key and revision) is.
fn schedule(
    pending: &mut HashMap<String, Pending>,
    task_key: String,
    revision: u64,
    due_ms: u64,
    task: impl FnOnce() -> Task,
) {
    if pending
        .get(&task_key)
        .is_some_and(|p| p.revision == revision)
    {
        return;
    }
    pending.insert(
        task_key,
        Pending {
            revision,
            due_ms,
            task: task(),
        },
    );
}

/// The tenant and client id of a key `<tenant>.<client id>`.
fn ids(key: &str) -> Option<(String, String)> {
    let (tenant, client_id) = key.split_once('.')?;
    Some((id_of(tenant)?, id_of(client_id)?))
}

/// What this node knows of other nodes' lives (times are Unix ms).
struct Lives {
    me: Arc<str>,
    /// When each node was last seen alive.
    last_seen: HashMap<Arc<str>, u64>,
    /// Dead nodes, and when they died at the latest.
    dead: HashMap<Arc<str>, u64>,
    /// Dead nodes whose wills and sessions are not scheduled yet: a scan
    /// that failed is tried again at the next look.
    unscanned: HashMap<Arc<str>, u64>,
}

impl Lives {
    fn new(me: Arc<str>) -> Lives {
        Lives {
            me,
            last_seen: HashMap::new(),
            dead: HashMap::new(),
            unscanned: HashMap::new(),
        }
    }

    fn me(&self) -> &Arc<str> {
        &self.me
    }

    /// With the nodes `alive` at `now`: the nodes seen alive before and
    /// missing now, with when they were last seen (they stay candidates
    /// until declared dead).
    fn missing(&mut self, alive: &HashSet<Arc<str>>, now: u64) -> Vec<(Arc<str>, u64)> {
        for node in alive {
            self.last_seen.insert(node.clone(), now);
            // Declared dead, yet back: a partition, not a death.
            self.dead.remove(node);
        }
        self.last_seen
            .iter()
            .filter(|(n, _)| !alive.contains(*n))
            .map(|(n, seen)| (n.clone(), *seen))
            .collect()
    }

    /// `node` is dead, since `died` at the latest: it is no longer a
    /// candidate.
    fn declare_dead(&mut self, node: &Arc<str>, died: u64) {
        self.last_seen.remove(node);
        self.dead.insert(node.clone(), died);
        self.unscanned.insert(node.clone(), died);
    }

    /// A node named in the buckets, missing from the live ones at `now`:
    /// if this node never saw it alive (it died before this node looked),
    /// when it died at the latest (now). Nodes write wills and owner keys
    /// only once their first heartbeat is in, so one missing from the live
    /// nodes is not one that is starting (the caller still asks it).
    fn unknown(&self, node: &Arc<str>, now: u64) -> Option<u64> {
        (!self.last_seen.contains_key(node) && !self.dead.contains_key(node)).then_some(now)
    }

    /// Whether this node sorts first of the live ones (it rescans).
    fn first(&self, alive: &HashSet<Arc<str>>) -> bool {
        alive.iter().min() == Some(&self.me)
    }

    /// Forgets nodes dead for long.
    fn forget(&mut self, now: u64) {
        self.dead
            .retain(|_, died| now.saturating_sub(*died) < FORGET_AFTER_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> HashSet<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn a_node_seen_then_missing_died_no_later_than_it_was_last_seen() {
        let mut lives = Lives::new(Arc::from("gw-b"));
        assert!(lives.missing(&nodes(&["gw-a", "gw-b"]), 1_000).is_empty());
        assert!(lives.missing(&nodes(&["gw-a", "gw-b"]), 2_000).is_empty());
        let missing = lives.missing(&nodes(&["gw-b"]), 3_000);
        assert_eq!(missing, vec![(Arc::from("gw-a"), 2_000)]);
        // Not confirmed gone yet: asked again at the next look.
        assert_eq!(lives.missing(&nodes(&["gw-b"]), 4_000).len(), 1);
        lives.declare_dead(&Arc::from("gw-a"), 2_000);
        assert!(
            lives.missing(&nodes(&["gw-b"]), 5_000).is_empty(),
            "dead once"
        );
        assert_eq!(lives.dead.get("gw-a"), Some(&2_000));
        // Its wills and sessions are to be scheduled until a scan succeeds.
        assert_eq!(lives.unscanned.get("gw-a"), Some(&2_000));
        // Back after all (a partition): alive again, not dead.
        lives.missing(&nodes(&["gw-a", "gw-b"]), 6_000);
        assert!(!lives.dead.contains_key("gw-a"));
    }

    #[test]
    fn a_node_never_seen_alive_is_judged_dead_from_when_it_was_first_missed() {
        let mut lives = Lives::new(Arc::from("gw-b"));
        let gone: Arc<str> = Arc::from("gw-x");
        assert_eq!(lives.unknown(&gone, 100_000), Some(100_000));
        lives.declare_dead(&gone, 100_000);
        assert_eq!(lives.unknown(&gone, 130_000), None, "known dead already");
        // A node this one saw alive is judged by `missing`, not this way.
        lives.missing(&nodes(&["gw-b", "gw-y"]), 130_000);
        assert_eq!(lives.unknown(&Arc::from("gw-y"), 190_000), None);
    }

    #[test]
    fn the_live_node_whose_name_sorts_first_rescans() {
        let alive = nodes(&["gw-b", "gw-c"]);
        assert!(Lives::new(Arc::from("gw-b")).first(&alive));
        assert!(!Lives::new(Arc::from("gw-c")).first(&alive));
    }

    #[test]
    fn a_key_names_its_tenant_and_client() {
        let key = crate::wills::key("t1", "dev/1");
        assert_eq!(ids(&key), Some(("t1".to_owned(), "dev/1".to_owned())));
        assert_eq!(ids("nodot"), None);
    }
}
