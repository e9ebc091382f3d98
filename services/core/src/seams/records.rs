//! Session records: a persistent session's subscriptions, expiry and replay
//! cursor kept off the node, so it resumes on any node with what it missed.

use std::sync::Arc;

use crate::message::{Message, MessageId};
use crate::session::{Session, SubscriptionSpec};

use super::BoxFuture;

/// A session kept by another node (or a node that is gone), as a CONNECT
/// with clean start 0 finds it.
pub struct Resumed {
    pub subscriptions: Vec<(Arc<str>, SubscriptionSpec)>,
    /// The messages the session missed, oldest first, read once it is
    /// polled: after the session's subscriptions are live again, so nothing
    /// falls between the replay and live deliveries. Not yet filtered by
    /// the session's subscriptions (the caller does that).
    pub replay: BoxFuture<Vec<Arc<Message>>>,
    /// Inbound QoS 2 packet ids the node recorded before routing their
    /// messages, with the messages' ids: the client may resend them (DUP).
    pub inbound_qos2: Vec<(u16, MessageId)>,
    /// Deliveries the client had not finished acknowledging, in send order:
    /// resent with DUP under their packet ids (or PUBREL) instead of being
    /// replayed as new ones.
    pub outbound: Vec<RecordedFlight>,
    /// QoS 2 messages the client completed (PUBCOMP) that the replay may
    /// still read: never delivered again.
    pub completed_qos2: Vec<MessageId>,
}

/// An outbound delivery in flight as a session record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedFlight {
    pub packet_id: u16,
    pub id: MessageId,
    pub state: FlightStage,
}

/// Where an outbound QoS 1/2 exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightStage {
    /// PUBLISH sent at QoS 1, waiting for PUBACK.
    Qos1,
    /// PUBLISH sent at QoS 2, waiting for PUBREC.
    Qos2,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// A change to a persistent session's outbound window, for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChange {
    /// A PUBLISH about to be sent (QoS 1 or 2) under `packet_id`.
    Sent(RecordedFlight),
    /// PUBREC came: PUBREL is about to be sent.
    Released(u16),
    /// PUBACK or PUBCOMP came: the exchange is over (a QoS 2 message's id
    /// is kept as completed while a replay could read it).
    Acknowledged(u16),
    /// No longer in flight, and not delivered either (a resume could not
    /// find its message to send again).
    Forgotten(u16),
}

/// Where persistent sessions are kept across nodes. Called at most once per
/// SUBSCRIBE filter, UNSUBSCRIBE filter, CONNECT, detach and inbound QoS 2
/// PUBLISH, and once per batch of deliveries or acknowledgements; never
/// per delivery.
pub trait SessionRecords: Send + Sync + 'static {
    /// `session` changed (subscriptions, expiry, attached or detached): its
    /// record is written in the background if it is persistent, deleted if
    /// it no longer is.
    fn changed(&self, session: &Arc<Session>);

    /// The session of `client_id` ended on this node: the record this node
    /// wrote is deleted (unless another node wrote it since). `starts_over`:
    /// a CONNECT with clean start claimed it, and whatever record any node
    /// left is deleted.
    fn ended(&self, tenant: &Arc<str>, client_id: &Arc<str>, starts_over: bool);

    /// A CONNECT with clean start 0 found no session of `client_id` on this
    /// node (after claiming it): the record another node kept, if any. Its
    /// replay holds the newest `keep_at_most` messages the session's
    /// subscriptions match (the older ones are dropped and counted as a
    /// full queue).
    fn resume(
        &self,
        tenant: &Arc<str>,
        client_id: &Arc<str>,
        keep_at_most: usize,
    ) -> BoxFuture<Option<Resumed>>;

    /// A QoS 2 PUBLISH of `session` with `packet_id` is about to be routed
    /// as message `id`. Where a resend could reach another node (the
    /// client's, once this one died), the pair is recorded first: the
    /// future says whether it was (then route; else answer that the store
    /// is unavailable), within a bounded wait. `None`: nothing to record
    /// (the embedded store keeps inbound ids itself; a session that ends
    /// with its connection is never resumed).
    fn keep_inbound_qos2(
        &self,
        _session: &Arc<Session>,
        _packet_id: u16,
        _id: MessageId,
    ) -> Option<BoxFuture<bool>> {
        None
    }

    /// The inbound QoS 2 exchange `packet_id` of `session` ended (PUBREL,
    /// or a refused PUBREC): its record is removed. The future says
    /// whether it was; PUBCOMP waits for it, since the client may reuse the
    /// packet id for a new message once it has PUBCOMP (a record left
    /// behind would take that message's resend for the old one). `None`:
    /// nothing recorded.
    fn released_inbound_qos2(
        &self,
        _session: &Arc<Session>,
        _packet_id: u16,
    ) -> Option<BoxFuture<bool>> {
        None
    }

    /// Whether a persistent session's outbound window is recorded here
    /// (`window_changed`): where it resumes elsewhere, what was in flight
    /// is resent as MQTT says (DUP, same packet id, PUBREL), and a QoS 2
    /// message is never delivered twice. The embedded store does not need
    /// it: a session resumes where its flights are.
    fn keeps_windows(&self) -> bool {
        false
    }

    /// `changes` happened to `session`'s outbound window (in order). With
    /// `wait`, the future says whether the record holds them (bounded):
    /// a QoS 2 PUBLISH is sent, and a PUBREL, only once it does; else they
    /// are written with the next record.
    fn window_changed(
        &self,
        _session: &Arc<Session>,
        _changes: Vec<WindowChange>,
        _wait: bool,
    ) -> Option<BoxFuture<bool>> {
        None
    }
}

/// The embedded shape: nothing kept off the node (the trait's defaults).
/// The embedded store keeps sessions already (`StoreOp::PutSession`), and
/// a resume finds them in the session table.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRecords;

impl SessionRecords for LocalRecords {
    fn changed(&self, _session: &Arc<Session>) {}

    fn ended(&self, _tenant: &Arc<str>, _client_id: &Arc<str>, _starts_over: bool) {}

    fn resume(
        &self,
        _tenant: &Arc<str>,
        _client_id: &Arc<str>,
        _keep_at_most: usize,
    ) -> BoxFuture<Option<Resumed>> {
        Box::pin(std::future::ready(None))
    }
}
