//! The message log: where a QoS 1/2 PUBLISH is kept before its publisher is
//! acknowledged, so no acknowledged message is lost with the node.

use std::sync::Arc;

use crate::message::Message;
use crate::quota::{Limit, TenantLimits};
use crate::store::Ticket;

use super::BoxFuture;

/// Keeps every QoS 1/2 message published on this node (retained or not)
/// before its PUBACK/PUBREC. Called once per such PUBLISH, before it is
/// routed; never for QoS 0.
///
/// Its tickets are the broker's store's: the publisher's acknowledgement
/// waits until [`crate::store::Store::durable`] reaches the ticket, in the
/// connection's held acknowledgements (so acks never overtake earlier
/// ones, and a log that cannot write gets the store's bounded wait: 0x80
/// on v5, a disconnect on 3.1.1). A shape with a log that keeps something
/// runs a store whose durable ticket is the log's (the scale-out shape
/// keeps nothing else on the node).
pub trait MessageLog: Send + Sync + 'static {
    /// Appends `message` of `tenant`. `Ok(ticket)`: acknowledge once it is
    /// durable (0: at once). `Err(limit)`: it can never be kept (larger
    /// than the log takes); it is neither routed nor acknowledged as kept.
    fn append(&self, tenant: &Arc<str>, message: &Arc<Message>) -> Result<Ticket, Limit>;

    /// Appends the resend of a QoS 2 message that a node now gone may have
    /// appended (and routed) already, under the same message id: `Some(true)`
    /// if the log held it (do not route it again), `Some(false)` if it did
    /// not (it holds it now: route it), `None` if the log could not say in
    /// a bounded wait.
    fn append_resent(&self, tenant: &Arc<str>, message: &Arc<Message>) -> BoxFuture<Option<bool>>;

    /// `tenant`'s limits changed: its log keeps what its plan says
    /// (`message_log_max_age`, `message_log_max_bytes`).
    fn limits_changed(&self, _tenant: &Arc<str>, _limits: &TenantLimits) {}
}

/// The embedded shape: nothing to append. The embedded store already keeps
/// what a persistent session must (its queued deliveries), and the
/// acknowledgement waits for that.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalLog;

impl MessageLog for LocalLog {
    fn append(&self, _tenant: &Arc<str>, _message: &Arc<Message>) -> Result<Ticket, Limit> {
        Ok(0)
    }

    fn append_resent(
        &self,
        _tenant: &Arc<str>,
        _message: &Arc<Message>,
    ) -> BoxFuture<Option<bool>> {
        // Never asked: only a resume from another node's record has resends.
        Box::pin(std::future::ready(Some(false)))
    }
}
