//! A message as the core routes it, and a delivery as a session queues it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aerie_proto::{ByteString, PublishProperties, QoS};
use bytes::Bytes;
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::store::{Store, StoreOp};

/// One published message, shared by every delivery of it: fan-out clones an
/// `Arc`, never the payload.
#[derive(Debug)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Properties to forward (payload format, content type, response topic,
    /// correlation data, user properties). Topic alias and subscription
    /// identifiers are per hop and never stored here.
    pub properties: PublishProperties,
    /// When the message expiry interval runs out, if it has one.
    pub expires_at: Option<Instant>,
    /// The session that published it, for no-local (0 for the broker itself).
    pub origin: u64,
    /// When the broker received it: the start of the publish-to-deliver latency.
    pub received_at: Instant,
    /// Set once the message is written to the store for a persistent session.
    pub persisted: Persisted,
}

/// The stored identity of a message: written once however many sessions
/// queue it, deleted from the store when the last `Arc` to it is dropped.
#[derive(Default)]
pub struct Persisted(OnceLock<(u64, Arc<dyn Store>)>);

impl Persisted {
    pub fn id(&self) -> Option<u64> {
        self.0.get().map(|(id, _)| *id)
    }

    /// Marks a message loaded from the store.
    pub fn loaded(id: u64, store: Arc<dyn Store>) -> Persisted {
        let p = Persisted::default();
        let _ = p.0.set((id, store));
        p
    }
}

impl std::fmt::Debug for Persisted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Persisted({:?})", self.id())
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some((id, store)) = self.persisted.0.get() {
            store.submit(StoreOp::DeleteMessage { id: *id });
        }
    }
}

impl Message {
    /// A message as a publisher hands it to the broker (a client's PUBLISH,
    /// a will, an HTTP publish): the message expiry interval becomes a
    /// deadline from now; the topic alias, which is per hop, is dropped.
    /// `origin` is the publishing session (0: the broker itself).
    pub fn published(
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: PublishProperties,
        origin: u64,
    ) -> Arc<Message> {
        let now = Instant::now();
        let expires_at = properties
            .message_expiry_interval
            .take()
            .map(|s| now + Duration::from_secs(u64::from(s)));
        properties.topic_alias = None;
        Arc::new(Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at,
            origin,
            received_at: now,
            persisted: Default::default(),
        })
    }

    /// Whether it counts in the tenant's usage: everything but the broker's
    /// own `$SYS` figures (clients cannot publish to `$`-topics).
    pub fn is_metered(&self) -> bool {
        !self.topic.starts_with('$')
    }

    /// Writes the message to the store unless it already is; returns its id.
    pub(crate) fn persist(self: &Arc<Self>, store: &Arc<dyn Store>) -> u64 {
        self.persisted
            .0
            .get_or_init(|| {
                let id = crate::store::next_message_id();
                // The write carries this Arc; it is dropped once written, so
                // the Drop above cannot run before the put is queued.
                store.submit(StoreOp::PutMessage {
                    id,
                    message: self.clone(),
                });
                (id, store.clone())
            })
            .0
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The message expiry interval left, in whole seconds (rounded up), to
    /// forward in the outgoing PUBLISH.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// Bytes this message accounts for in a queue.
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }
}

/// A message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send: true for retained messages sent on subscribe,
    /// the published flag with retain-as-published, false otherwise.
    pub retain: bool,
    /// Subscription identifiers of every matching subscription that has one.
    pub subscription_ids: SmallVec<[u32; 2]>,
    /// The shared subscription it was routed through: if the member leaves
    /// before acknowledging, it goes to another member.
    pub shared: Option<Arc<SharedGroup>>,
    /// Its position in the session's stored queue, when it is stored.
    pub stored_seq: Option<u64>,
}

/// A shared subscription's identity: `$share/<group>/<filter>`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SharedGroup {
    pub group: Arc<str>,
    pub filter: Arc<str>,
}
