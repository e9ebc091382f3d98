//! The broker: tenants by id. The one entry point connection tasks hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::config::CoreConfig;
use crate::node::Node;
use crate::seams::Seams;
use crate::session::Kick;
use crate::store::{LoadedState, NullStore, Store};
use crate::tenant::Tenant;

/// A cheap, cloneable handle (mini-redis `Db` style).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<CoreConfig>,
    node: Arc<Node>,
    tenants: RwLock<HashMap<Arc<str>, Arc<Tenant>>>,
    session_ids: Arc<AtomicU64>,
    connection_ids: AtomicU64,
    store: Arc<dyn Store>,
    seams: Seams,
}

impl Broker {
    /// A broker that keeps nothing across restarts.
    pub fn new(config: CoreConfig) -> Broker {
        Broker::with_store(config, Arc::new(NullStore::new()))
    }

    /// A broker whose persistent sessions and retained messages go to `store`.
    pub fn with_store(config: CoreConfig, store: Arc<dyn Store>) -> Broker {
        Broker::with_seams(config, store, Seams::embedded())
    }

    /// A broker whose cross-node parts are `seams` (see [`crate::seams`]).
    pub fn with_seams(config: CoreConfig, store: Arc<dyn Store>, seams: Seams) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                node: Arc::new(Node::new(config.node_id)),
                config: Arc::new(config),
                tenants: RwLock::new(HashMap::new()),
                session_ids: Arc::new(AtomicU64::new(0)),
                connection_ids: AtomicU64::new(0),
                store,
                seams,
            }),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// This process as a node: message ids and origins.
    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// The tenant with this id, created on first use.
    pub fn tenant(&self, id: &str) -> Arc<Tenant> {
        if let Some(t) = self.inner.tenants.read().get(id) {
            return t.clone();
        }
        let mut tenants = self.inner.tenants.write();
        tenants
            .entry(Arc::from(id))
            .or_insert_with(|| {
                Arc::new(Tenant::new(
                    Arc::from(id),
                    self.inner.config.clone(),
                    self.inner.node.clone(),
                    self.inner.session_ids.clone(),
                    self.inner.store.clone(),
                    &self.inner.seams,
                ))
            })
            .clone()
    }

    /// The tenant with this id if it exists (never creates one).
    pub fn existing_tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.inner.tenants.read().get(id).cloned()
    }

    /// Forgets a deleted tenant, in memory and in the store
    /// ([`Tenant::dispose`]); false if the broker did not have it.
    pub fn remove_tenant(&self, id: &str) -> bool {
        let removed = self.inner.tenants.write().remove(id);
        match removed {
            Some(tenant) => {
                tenant.dispose();
                true
            }
            None => false,
        }
    }

    /// Every tenant the broker has.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.inner.tenants.read().values().cloned().collect()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Puts back what the store kept: sessions (detached, expiry clocks
    /// running) and retained messages. Call before listeners start.
    pub fn restore(&self, state: LoadedState) {
        let max_id = state
            .sessions
            .iter()
            .flat_map(|s| s.queue.iter().map(|(r, _)| r.message_id))
            .max()
            .unwrap_or(0);
        crate::store::reserve_message_ids_above(max_id);
        for (tenant, message) in state.retained {
            self.tenant(&tenant).restore_retained(message);
        }
        for session in state.sessions {
            self.tenant(&session.tenant).restore_session(session);
        }
    }

    /// Sets the gauges that are cheaper to compute on a timer than to keep
    /// up to date per message (queue depth).
    pub fn refresh_gauges(&self) {
        let tenants: Vec<_> = self.inner.tenants.read().values().cloned().collect();
        let queued: usize = tenants.iter().map(|t| t.queued_messages()).sum();
        metrics::gauge!(crate::metrics::QUEUED_MESSAGES).set(queued as f64);
        crate::tenant_series::export(&tenants);
    }

    /// A process-unique id for a new connection.
    pub fn next_connection_id(&self) -> u64 {
        self.inner.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Asks every connection of every tenant to close with `reason`.
    pub fn kick_all(&self, kick: Kick) {
        let tenants: Vec<_> = self.inner.tenants.read().values().cloned().collect();
        for t in tenants {
            t.kick_all(kick);
        }
    }
}
