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
