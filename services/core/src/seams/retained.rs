//! Retained messages as the router sees them: one per topic name per
//! tenant, set and matched asynchronously (over NATS each is a network call).

use std::sync::Arc;

use parking_lot::RwLock;

use super::BoxFuture;
use crate::message::Message;
use crate::metrics as m;
use crate::quota::Limit;
use crate::retained::{RetainChange, RetainedMap};
use crate::store::{Store, StoreOp, Ticket, unix_ms_now};

/// The tenant's retained quota at the time of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedQuota {
    pub max_messages: u32,
    pub max_bytes: u64,
}

/// One tenant's retained messages.
pub trait RetainedStore: Send + Sync + 'static {
    /// Makes `message` its topic's retained message (an empty payload
    /// deletes it), unless that would break `quota`. The ticket says when
    /// the change is durable (0: nothing to wait for).
    fn set(&self, message: &Arc<Message>, quota: RetainedQuota)
    -> BoxFuture<Result<Ticket, Limit>>;

    /// The unexpired retained messages whose topics match `filter`.
    fn matching(&self, filter: &str) -> BoxFuture<Vec<Arc<Message>>>;

    /// How many the tenant has (for `$SYS`), as far as this node knows.
    fn count(&self) -> usize;

    /// Puts back a message the node's own store kept (at start-up).
    fn restore(&self, message: Arc<Message>);

    /// Forgets them all (the tenant was deleted).
    fn clear(&self);
}

/// Makes each tenant's [`RetainedStore`].
pub trait RetainedStores: Send + Sync + 'static {
    /// `store` is the tenant's window on the node's durable store.
    fn for_tenant(&self, tenant: &Arc<str>, store: Arc<dyn Store>) -> Arc<dyn RetainedStore>;
}

/// The embedded shape: a map in memory, written through to the embedded store.
pub struct LocalRetained {
    tenant: Arc<str>,
    map: RwLock<RetainedMap>,
    store: Arc<dyn Store>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRetainedStores;

impl RetainedStores for LocalRetainedStores {
    fn for_tenant(&self, tenant: &Arc<str>, store: Arc<dyn Store>) -> Arc<dyn RetainedStore> {
        Arc::new(LocalRetained {
            tenant: tenant.clone(),
            map: RwLock::new(RetainedMap::default()),
            store,
        })
    }
}

impl LocalRetained {
    fn set_now(&self, message: &Arc<Message>, quota: RetainedQuota) -> Result<Ticket, Limit> {
        let mut map = self.map.write();
        crate::quota::check_retained(&map, message, quota.max_messages, quota.max_bytes)?;
        let change = map.apply(message);
        // Submitted under the lock so the store sees changes in the same order.
        let ticket = match change {
            RetainChange::Unchanged => 0,
            RetainChange::Deleted => self.store.submit(StoreOp::DeleteRetained {
                tenant: self.tenant.clone(),
                topic: message.topic.clone(),
            }),
            RetainChange::Set | RetainChange::Replaced => self.store.submit(StoreOp::PutRetained {
                tenant: self.tenant.clone(),
                message: message.clone(),
            }),
        };
        drop(map);
        match change {
            RetainChange::Set => metrics::gauge!(m::RETAINED_MESSAGES).increment(1.0),
            RetainChange::Deleted => metrics::gauge!(m::RETAINED_MESSAGES).decrement(1.0),
            RetainChange::Replaced | RetainChange::Unchanged => {}
        }
        Ok(ticket)
    }
}

impl RetainedStore for LocalRetained {
    fn set(
        &self,
        message: &Arc<Message>,
        quota: RetainedQuota,
    ) -> BoxFuture<Result<Ticket, Limit>> {
        Box::pin(std::future::ready(self.set_now(message, quota)))
    }

    fn matching(&self, filter: &str) -> BoxFuture<Vec<Arc<Message>>> {
        let found = self.map.read().matching(filter, unix_ms_now());
        Box::pin(std::future::ready(found))
    }

    fn count(&self) -> usize {
        self.map.read().len()
    }

    fn restore(&self, message: Arc<Message>) {
        if self.map.write().apply(&message) == RetainChange::Set {
            metrics::gauge!(m::RETAINED_MESSAGES).increment(1.0);
        }
    }

    fn clear(&self) {
        let cleared = self.map.write().clear();
        metrics::gauge!(m::RETAINED_MESSAGES).decrement(cleared as f64);
    }
}
