//! A message as the core routes it, and a delivery as a session queues it.
//!
//! A message can cross a process boundary ([`codec`]): its expiry is wall-clock
//! time, its origin names the node and session that published it, and its id
//! is unique across nodes. Only `received_at` (for the local latency
//! histogram) and `persisted` (the local store's key) are this process's own.

pub mod codec;

use std::sync::{Arc, OnceLock};

use aerie_proto::{ByteString, PublishProperties, QoS};
use bytes::Bytes;
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::node::NodeId;
use crate::store::{Store, StoreOp, unix_ms_now};

/// Who published a message, for no-local (MQTT 5 §3.8.3.1): a session of a
/// node. Session 0 is the broker itself (`$SYS`, HTTP publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    pub node: NodeId,
    pub session: u64,
}

/// A message's identity across nodes: the node that accepted it and that
/// node's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MessageId {
    pub node: NodeId,
    pub seq: u64,
}

/// One published message, shared by every delivery of it: fan-out clones an
/// `Arc`, never the payload.
#[derive(Debug)]
pub struct Message {
    pub id: MessageId,
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Properties to forward (payload format, content type, response topic,
    /// correlation data, user properties). Topic alias and subscription
    /// identifiers are per hop and never stored here.
    pub properties: PublishProperties,
    /// When the message expiry interval runs out (Unix ms), if it has one:
    /// wall-clock, so it means the same on every node and after a restart.
    pub expires_at_ms: Option<u64>,
    /// The session that published it, for no-local.
    pub origin: Origin,
    /// When this process received it (from a client, or decoded it): the
    /// start of the publish-to-deliver latency. Never leaves the process.
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

/// The PUBLISH properties a will is published with: those it carries
/// (the will delay is not one of them).
pub fn will_publish_properties(p: aerie_proto::WillProperties) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: None,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        subscription_identifiers: Vec::new(),
        content_type: p.content_type,
    }
}

impl Message {
    /// A message as a publisher hands it to the broker (a client's PUBLISH,
    /// a will, an HTTP publish): the message expiry interval becomes a
    /// deadline from now; the topic alias, which is per hop, is dropped.
    /// `origin` is the publishing session; `id` comes from this node
    /// ([`crate::Node::next_message_id`]).
    pub fn published(
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: PublishProperties,
        origin: Origin,
        id: MessageId,
    ) -> Arc<Message> {
        let expires_at_ms = properties
            .message_expiry_interval
            .take()
            .map(|s| unix_ms_now() + u64::from(s) * 1000);
        properties.topic_alias = None;
        Arc::new(Message {
            id,
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at_ms,
            origin,
            received_at: Instant::now(),
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

    /// Whether it expired by `now_ms` (Unix ms, [`unix_ms_now`]).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The message expiry interval left at `now_ms`, in whole seconds
    /// (rounded up), to forward in the outgoing PUBLISH.
    pub fn remaining_expiry(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms.map(|at| {
            let secs = at.saturating_sub(now_ms).div_ceil(1000);
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
