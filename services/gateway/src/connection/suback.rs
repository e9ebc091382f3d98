//! A SUBACK that waits for the subscription to be live on every node: in
//! the scale-out shape the backbone's interest is flushed to NATS first, so
//! a message published anywhere after the SUBACK reaches the client. The
//! connection handles no further packet of its client until then (their
//! order is kept); the embedded shape never waits.

use aerie_core::Delivery;
use aerie_core::seams::BoxFuture;
use aerie_proto::Packet;

use super::Conn;

/// A SUBACK held until its filters' interest is live.
pub(crate) struct HeldSubAck {
    pub live: Vec<BoxFuture<()>>,
    pub suback: Packet,
    /// Retained messages for the new subscriptions: sent after the SUBACK.
    pub retained: Vec<Delivery>,
}

impl Conn {
    /// Sends `suback` (then queues `retained`) now, or once every future
    /// in `live` resolved.
    pub(super) fn send_suback(
        &mut self,
        live: Vec<BoxFuture<()>>,
        suback: Packet,
        retained: Vec<Delivery>,
    ) {
        if live.is_empty() {
            self.finish_suback(&suback, retained);
        } else {
            self.held_suback = Some(Box::new(HeldSubAck {
                live,
                suback,
                retained,
            }));
        }
    }

    /// Waits for a held SUBACK's interest (the backbone bounds the wait),
    /// then sends it.
    pub(super) async fn release_suback(&mut self) {
        let Some(held) = self.held_suback.take() else {
            return;
        };
        let HeldSubAck {
            live,
            suback,
            retained,
        } = *held;
        for fut in live {
            fut.await;
        }
        self.finish_suback(&suback, retained);
    }

    fn finish_suback(&mut self, suback: &Packet, retained: Vec<Delivery>) {
        let _ = self.out.push(suback);
        for d in retained {
            let _ = self.session.enqueue(d, self.tenant.config());
        }
    }
}
