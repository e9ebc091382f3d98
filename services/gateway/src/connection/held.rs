//! Answers that wait for the cluster, in the scale-out shape:
//! - a SUBACK waits until the subscription is live on every node (the
//!   backbone's interest reached NATS), so a message published anywhere
//!   after it reaches the client, and until the retained store (JetStream)
//!   answered which retained messages match, so they follow the SUBACK
//!   (queued before it, a client could take them for strays and drop them);
//! - the PUBACK/PUBREC of a retained message waits until the retained
//!   store (JetStream) kept or refused it, so the publisher learns of the
//!   tenant's quota (0x97) and a SUBSCRIBE anywhere after it gets it;
//! - the PUBREC of a persistent session's QoS 2 PUBLISH waits until its
//!   packet id is recorded and the message routed (a resend on another
//!   gateway after this one's death is routed once); a resend of one that
//!   a dead gateway recorded, until the log said whether it held it; and
//!   its PUBCOMP until the record no longer holds the id;
//! - a persistent session's QoS 2 deliveries and PUBRELs wait until its
//!   record holds the outbound window they change (`window.rs`).
//!
//! The connection handles no further packet of its client meanwhile, so
//! their order is kept. The embedded shape never waits.

use aerie_core::seams::BoxFuture;
use aerie_core::{Delivery, Later};
use aerie_proto::{Packet, QoS, ReasonCode};
use tokio::sync::oneshot;

use super::{Close, Conn, Flow};

/// An answer held until the cluster has done its part.
// Boxed where it is kept (`Conn::held`), one at a time: size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Held {
    SubAck {
        live: Vec<BoxFuture<()>>,
        suback: Packet,
        /// Retained messages for the new subscriptions: sent after the SUBACK.
        retained: Vec<Delivery>,
        /// More of them, once the retained store answers.
        retained_later: Vec<BoxFuture<Vec<Delivery>>>,
    },
    Publish {
        later: oneshot::Receiver<Later>,
        qos: QoS,
        packet_id: u16,
    },
    /// A PUBCOMP, once the inbound QoS 2 id's record is removed.
    PubComp {
        removed: BoxFuture<bool>,
        packet_id: u16,
    },
    /// Deliveries and PUBRELs, once the session record holds the outbound
    /// window they change (`window.rs`).
    Window { recorded: BoxFuture<bool> },
}

impl Conn {
    /// Sends `suback` (then queues `retained`) now, or once every future
    /// in `live` and `retained_later` resolved (then queues theirs too).
    pub(super) fn send_suback(
        &mut self,
        live: Vec<BoxFuture<()>>,
        suback: Packet,
        retained: Vec<Delivery>,
        retained_later: Vec<BoxFuture<Vec<Delivery>>>,
    ) {
        if live.is_empty() && retained_later.is_empty() {
            self.finish_suback(&suback, retained);
        } else {
            self.held = Some(Box::new(Held::SubAck {
                live,
                suback,
                retained,
                retained_later,
            }));
        }
    }

    /// Acknowledges a PUBLISH routed later once it has been.
    pub(super) fn hold_publish_ack(
        &mut self,
        later: oneshot::Receiver<Later>,
        qos: QoS,
        packet_id: u16,
    ) {
        self.held = Some(Box::new(Held::Publish {
            later,
            qos,
            packet_id,
        }));
    }

    /// Sends PUBCOMP once the record of its packet id is removed.
    pub(super) fn hold_pubcomp(&mut self, removed: BoxFuture<bool>, packet_id: u16) {
        self.held = Some(Box::new(Held::PubComp { removed, packet_id }));
    }

    /// Waits for a held answer (its seam bounds the wait), then sends it.
    pub(super) async fn release_held(&mut self) -> Flow {
        let Some(held) = self.held.take() else {
            return Flow::Continue;
        };
        match *held {
            Held::SubAck {
                live,
                suback,
                mut retained,
                retained_later,
            } => {
                // Both over the network: waited for together.
                let (_, later) = futures_util::future::join(
                    futures_util::future::join_all(live),
                    futures_util::future::join_all(retained_later),
                )
                .await;
                retained.extend(later.into_iter().flatten());
                self.finish_suback(&suback, retained);
            }
            Held::Publish {
                later,
                qos,
                packet_id,
            } => match later.await.unwrap_or(Later::Unavailable) {
                Later::Refused(_over) => {
                    // Always `Continue`: a refused message is answered.
                    let _ = self.ack_unrouted(qos, packet_id, ReasonCode::QUOTA_EXCEEDED);
                }
                // Kept and routed (its subscribers elsewhere are not known).
                Later::Kept(ticket) => self.ack_published(qos, packet_id, ticket, 1),
                Later::Unavailable => return self.refuse_unavailable(qos, packet_id),
            },
            Held::PubComp { removed, packet_id } => {
                if !removed.await {
                    // Not removed: a PUBCOMP now could let the client reuse
                    // the id while a record says it is the old message's.
                    // Closed instead; the client resends PUBREL.
                    tracing::warn!(tenant = %self.tenant.id, client_id = %self.session.client_id, "an inbound QoS 2 id could not be released in the session record; closing");
                    return Close::by_server(ReasonCode::UNSPECIFIED_ERROR, "store_unavailable");
                }
                self.send_ack(Packet::PubComp, packet_id, ReasonCode::SUCCESS);
            }
            Held::Window { recorded } => {
                let recorded = recorded.await;
                return self.window_recorded(recorded);
            }
        }
        Flow::Continue
    }

    fn finish_suback(&mut self, suback: &Packet, retained: Vec<Delivery>) {
        let _ = self.out.push(suback);
        for d in retained {
            let _ = self.session.enqueue(d, self.tenant.config());
        }
    }
}
