//! Live connections by tenant: what the control plane lists and disconnects,
//! and what a revocation, a suspension or a deleted tenant must reach.
//!
//! A connection registers once its CONNECT is accepted and is removed when
//! its [`Registration`] drops, so the registry never outlives a connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use aerie_core::{Kick, Session};
use aerie_proto::ProtocolVersion;
use parking_lot::{Mutex, RwLock};

use crate::connection::Transport;

/// The token a connection is authenticated with (it changes on v5 re-authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub jti: String,
    /// Unix seconds.
    pub exp: i64,
    /// The tenant's own issuer that signed it (`None`: the control plane).
    pub tenant_issuer: Option<String>,
}

impl Credential {
    pub fn of(grant: &crate::auth::Grant) -> Credential {
        Credential {
            jti: grant.jti.clone(),
            exp: grant.exp,
            tenant_issuer: grant.tenant_issuer.clone(),
        }
    }
}

/// One live connection. Its tenant and client id are its session's.
pub struct LiveConnection {
    pub connection_id: u64,
    pub protocol: ProtocolVersion,
    pub transport: Transport,
    pub connected_at: SystemTime,
    /// Up to when its connection time is in its tenant's usage (Unix ms;
    /// `u64::MAX` once it ended): see `crate::usage`.
    pub(crate) metered_until: AtomicU64,
    session: Arc<Session>,
    /// `None`: an anonymous client. Boxed: there is one of these per
    /// connection, and anonymous ones need none of it.
    credential: Mutex<Option<Box<Credential>>>,
}

impl LiveConnection {
    pub fn tenant(&self) -> &Arc<str> {
        &self.session.tenant
    }

    pub fn client_id(&self) -> &Arc<str> {
        &self.session.client_id
    }

    pub fn credential(&self) -> Option<Credential> {
        self.credential.lock().as_deref().cloned()
    }

    pub(crate) fn set_credential(&self, credential: Credential) {
        *self.credential.lock() = Some(Box::new(credential));
    }

    /// The filters its session is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.session
            .subscriptions()
            .into_iter()
            .map(|(filter, _)| filter.to_string())
            .collect()
    }

    /// Asks this connection (not a later one with the same client id) to close.
    pub fn kick(&self, kick: Kick) -> bool {
        self.session.kick_connection(self.connection_id, kick)
    }
}

type TenantConnections = HashMap<u64, Arc<LiveConnection>>;

#[derive(Default)]
pub struct Registry {
    tenants: RwLock<HashMap<Arc<str>, TenantConnections>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.tenants.read().len())
            .finish()
    }
}

/// What a connection tells the registry about itself.
pub struct NewConnection {
    pub connection_id: u64,
    pub protocol: ProtocolVersion,
    pub transport: Transport,
    pub session: Arc<Session>,
    pub credential: Option<Credential>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a connection; it stays until the returned guard drops.
    pub fn register(self: &Arc<Self>, new: NewConnection) -> Registration {
        let connected_at = SystemTime::now();
        let live = Arc::new(LiveConnection {
            connection_id: new.connection_id,
            protocol: new.protocol,
            transport: new.transport,
            connected_at,
            metered_until: AtomicU64::new(crate::usage::unix_ms(connected_at)),
            session: new.session,
            credential: Mutex::new(new.credential.map(Box::new)),
        });
        self.tenants
            .write()
            .entry(live.tenant().clone())
            .or_default()
            .insert(live.connection_id, live.clone());
        Registration {
            registry: self.clone(),
            live,
        }
    }

    /// Asks every live connection to close with `kick`.
    pub fn kick_all(&self, kick: Kick) {
        for connections in self.tenants.read().values() {
            for live in connections.values() {
                live.kick(kick);
            }
        }
    }

    /// The tenant's live connections, in no particular order.
    pub fn connections(&self, tenant: &str) -> Vec<Arc<LiveConnection>> {
        self.tenants
            .read()
            .get(tenant)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many connections the tenant has now.
    pub fn count(&self, tenant: &str) -> usize {
        self.tenants.read().get(tenant).map_or(0, HashMap::len)
    }

    /// The tenant's connection with this client id (at most one: a second
    /// CONNECT with the same id takes the session over).
    pub fn find(&self, tenant: &str, client_id: &str) -> Option<Arc<LiveConnection>> {
        self.tenants
            .read()
            .get(tenant)?
            .values()
            .find(|c| &**c.client_id() == client_id)
            .cloned()
    }

    /// Tenants with at least one connection.
    pub fn tenants(&self) -> Vec<Arc<str>> {
        self.tenants.read().keys().cloned().collect()
    }

    fn remove(&self, live: &LiveConnection) {
        let mut tenants = self.tenants.write();
        if let Some(connections) = tenants.get_mut(live.tenant()) {
            connections.remove(&live.connection_id);
            if connections.is_empty() {
                tenants.remove(live.tenant());
            }
        }
    }
}

/// A connection's place in the [`Registry`], released on drop.
pub struct Registration {
    registry: Arc<Registry>,
    live: Arc<LiveConnection>,
}

impl Registration {
    pub fn live(&self) -> &Arc<LiveConnection> {
        &self.live
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.live);
    }
}
