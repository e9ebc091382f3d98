//! The message log: where a QoS 1/2 PUBLISH is kept before its publisher is
//! acknowledged, so no acknowledged message is lost with the node.

use std::sync::Arc;

use crate::message::Message;
use crate::quota::Limit;
use crate::store::Ticket;

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
}
