//! Persistence as the core sees it: a stream of writes with tickets, and a
//! watch that says how far they are durable. The embedded shape implements it
//! with fjall (crate `aerie-store`); tests and non-persistent runs use
//! [`NullStore`].
//!
//! **Invariant:** an acknowledgement (PUBACK, PUBREC) for a message that a
//! persistent session or a retained slot must keep is sent only once the
//! store's durable ticket has reached the ticket of that message's writes.
//! Writes are batched by the store (group commit), so many messages share one
//! fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aerie_proto::{ByteString, QoS};
use smallvec::SmallVec;
use tokio::sync::watch;

use crate::message::Message;
use crate::session::SubscriptionSpec;

/// A position in the store's write stream. 0 means "nothing to wait for".
pub type Ticket = u64;

/// A session as it is persisted.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub expiry_interval: u32,
    /// When a disconnected session expires (Unix ms); None while attached or
    /// when it never expires.
    pub expires_at_ms: Option<u64>,
    pub subscriptions: Vec<(Arc<str>, SubscriptionSpec)>,
}

/// A queued delivery as it is persisted; the message itself is stored once.
#[derive(Debug, Clone)]
pub struct QueuedRecord {
    pub seq: u64,
    pub message_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SmallVec<[u32; 2]>,
}

#[derive(Debug, Clone)]
pub enum StoreOp {
    PutSession {
        tenant: Arc<str>,
        client_id: Arc<str>,
        record: SessionRecord,
    },
    /// Deletes the session record, its queue and its inbound QoS 2 ids.
    DeleteSession {
        tenant: Arc<str>,
        client_id: Arc<str>,
    },
    PutMessage {
        id: u64,
        message: Arc<Message>,
    },
    DeleteMessage {
        id: u64,
    },
    PutQueued {
        tenant: Arc<str>,
        client_id: Arc<str>,
        record: QueuedRecord,
    },
    DeleteQueued {
        tenant: Arc<str>,
        client_id: Arc<str>,
        seq: u64,
    },
    PutRetained {
        tenant: Arc<str>,
        message: Arc<Message>,
    },
    DeleteRetained {
        tenant: Arc<str>,
        topic: ByteString,
    },
    PutInboundQos2 {
        tenant: Arc<str>,
        client_id: Arc<str>,
        packet_id: u16,
    },
    DeleteInboundQos2 {
        tenant: Arc<str>,
        client_id: Arc<str>,
        packet_id: u16,
    },
    /// Deletes everything kept under the tenant: sessions, queues, inbound
    /// QoS 2 ids, retained messages. (Messages go when their last `Arc` does.)
    DeleteTenant {
        tenant: Arc<str>,
    },
}

impl StoreOp {
    /// Whether the op writes something (rather than removing it).
    fn is_put(&self) -> bool {
        matches!(
            self,
            StoreOp::PutSession { .. }
                | StoreOp::PutMessage { .. }
                | StoreOp::PutQueued { .. }
                | StoreOp::PutRetained { .. }
                | StoreOp::PutInboundQos2 { .. }
        )
    }
}

pub trait Store: Send + Sync + 'static {
    /// Queues one write. The returned ticket is durable once
    /// [`Store::durable`] reaches it.
    fn submit(&self, op: StoreOp) -> Ticket;
    /// The highest ticket that is durable.
    fn durable(&self) -> watch::Receiver<Ticket>;
    /// Whether writes are kept at all (false: skip the bookkeeping).
    fn is_persistent(&self) -> bool {
        true
    }
    /// So many writes wait for the disk that a connection whose
    /// acknowledgements depend on the store should stop reading until the
    /// durable ticket moves (the store's own back-pressure).
    fn is_backlogged(&self) -> bool {
        false
    }
    /// The last commit failed: the store retries it, and acknowledgements
    /// that need it wait. Readiness reports it.
    fn is_failing(&self) -> bool {
        false
    }
}

/// One tenant's window on the store. Once the tenant is deleted
/// ([`TenantStore::delete_tenant`]) its writes are dropped and only removals
/// pass, so nothing of a deleted tenant reappears on disk after its
/// `DeleteTenant` (a will fired late, a session detaching).
pub(crate) struct TenantStore {
    inner: Arc<dyn Store>,
    /// True once deleted. Held for reading across each submit, so no write
    /// can slip in behind the `DeleteTenant`.
    deleted: parking_lot::RwLock<bool>,
}

impl TenantStore {
    pub fn new(inner: Arc<dyn Store>) -> TenantStore {
        TenantStore {
            inner,
            deleted: parking_lot::RwLock::new(false),
        }
    }

    /// Removes everything stored for `tenant`; later writes are dropped.
    pub fn delete_tenant(&self, tenant: Arc<str>) -> Ticket {
        let mut deleted = self.deleted.write();
        *deleted = true;
        self.inner.submit(StoreOp::DeleteTenant { tenant })
    }
}

impl Store for TenantStore {
    fn submit(&self, op: StoreOp) -> Ticket {
        let deleted = self.deleted.read();
        if *deleted && op.is_put() {
            return 0;
        }
        self.inner.submit(op)
    }
    fn durable(&self) -> watch::Receiver<Ticket> {
        self.inner.durable()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    fn is_backlogged(&self) -> bool {
        self.inner.is_backlogged()
    }
    fn is_failing(&self) -> bool {
        self.inner.is_failing()
    }
}

/// Keeps nothing; every ticket is durable at once.
pub struct NullStore {
    durable: watch::Sender<Ticket>,
}

impl NullStore {
    pub fn new() -> NullStore {
        NullStore {
            durable: watch::Sender::new(0),
        }
    }
}

impl Default for NullStore {
    fn default() -> Self {
        NullStore::new()
    }
}

impl Store for NullStore {
    fn submit(&self, _op: StoreOp) -> Ticket {
        0
    }
    fn durable(&self) -> watch::Receiver<Ticket> {
        self.durable.subscribe()
    }
    fn is_persistent(&self) -> bool {
        false
    }
}

/// Process-wide message ids for stored messages, continued after a restart.
static NEXT_MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_message_id() -> u64 {
    NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed)
}

/// After loading, new ids start above every stored one.
pub fn reserve_message_ids_above(max: u64) {
    NEXT_MESSAGE_ID.fetch_max(max + 1, Ordering::Relaxed);
}

/// Everything a store hands back at start-up.
#[derive(Debug, Default)]
pub struct LoadedState {
    pub sessions: Vec<LoadedSession>,
    /// (tenant, retained message)
    pub retained: Vec<(Arc<str>, Arc<Message>)>,
}

#[derive(Debug)]
pub struct LoadedSession {
    pub tenant: Arc<str>,
    pub client_id: Arc<str>,
    pub record: SessionRecord,
    /// In seq order; messages shared between sessions are one `Arc`.
    pub queue: Vec<(QueuedRecord, Arc<Message>)>,
    pub inbound_qos2: Vec<u16>,
}

/// Wall-clock now in Unix ms (persisted expiry times outlive `Instant`s).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what reaches it.
    #[derive(Default)]
    struct Recording(parking_lot::Mutex<Vec<StoreOp>>);

    impl Store for Recording {
        fn submit(&self, op: StoreOp) -> Ticket {
            let mut ops = self.0.lock();
            ops.push(op);
            ops.len() as Ticket
        }
        fn durable(&self) -> watch::Receiver<Ticket> {
            watch::Sender::new(0).subscribe()
        }
    }

    fn put_session() -> StoreOp {
        StoreOp::PutSession {
            tenant: "t".into(),
            client_id: "c".into(),
            record: SessionRecord {
                expiry_interval: 60,
                expires_at_ms: None,
                subscriptions: vec![],
            },
        }
    }

    #[test]
    fn a_deleted_tenant_writes_nothing_after_its_deletion_but_removals_pass() {
        let inner = Arc::new(Recording::default());
        let store = TenantStore::new(inner.clone());
        assert_ne!(store.submit(put_session()), 0);
        store.delete_tenant("t".into());
        assert_eq!(store.submit(put_session()), 0, "a late put is dropped");
        store.submit(StoreOp::DeleteMessage { id: 7 });
        let ops = inner.0.lock();
        assert!(matches!(
            ops.as_slice(),
            [
                StoreOp::PutSession { .. },
                StoreOp::DeleteTenant { .. },
                StoreOp::DeleteMessage { id: 7 }
            ]
        ));
    }
}
