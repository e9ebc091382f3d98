//! What only a client that publishes needs: made by its first PUBLISH (or
//! a PUBREL for an exchange it began on an earlier connection). Most
//! clients of a fleet only subscribe, and inline these fields are 112
//! bytes in every connection's task for its whole life.

use std::collections::VecDeque;
use std::sync::Arc;

use aerie_core::{Session, Ticket};

use super::{HeldAck, pacing::Pacing};
use crate::limits::ClientRates;

pub(crate) struct Publishing {
    /// How far the store's writes are durable.
    pub durable: tokio::sync::watch::Receiver<Ticket>,
    /// Acknowledgements waiting for their ticket to become durable, in the
    /// order the packets they answer arrived.
    pub held_acks: VecDeque<HeldAck>,
    /// How many of `held_acks` are PUBACKs: QoS 1 PUBLISHes not yet
    /// acknowledged, which count against Receive Maximum.
    pub held_pubacks: usize,
    /// A subscriber whose queue our publishes are filling: reading waits a
    /// little for it to drain (backpressure before drops).
    pub backpressure: Option<Arc<Session>>,
    /// How much of its pausing budget this publisher has spent.
    pub pacing: Pacing,
    /// The client's own publish rates.
    pub rates: ClientRates,
}

impl Publishing {
    pub fn new(durable: tokio::sync::watch::Receiver<Ticket>) -> Box<Publishing> {
        Box::new(Publishing {
            durable,
            held_acks: VecDeque::new(),
            held_pubacks: 0,
            backpressure: None,
            pacing: Pacing::default(),
            rates: ClientRates::default(),
        })
    }
}

impl Publishing {
    /// The oldest held acknowledgement, taken if `due` says it is.
    fn pop_held_if(&mut self, due: impl FnOnce(&HeldAck) -> bool) -> Option<HeldAck> {
        if !due(self.held_acks.front()?) {
            return None;
        }
        let held = self.held_acks.pop_front()?;
        if matches!(held.packet, aerie_proto::Packet::PubAck(_)) {
            self.held_pubacks -= 1;
        }
        Some(held)
    }
}

impl super::Conn {
    /// The oldest held acknowledgement, taken if `due` says it is.
    pub(super) fn pop_held_if(&mut self, due: impl FnOnce(&HeldAck) -> bool) -> Option<HeldAck> {
        self.publishing.as_mut()?.pop_held_if(due)
    }

    /// The publishing state, made on first use.
    pub(super) fn publishing(&mut self) -> &mut Publishing {
        let tenant = &self.tenant;
        self.publishing
            .get_or_insert_with(|| Publishing::new(tenant.store().durable()))
    }

    /// Whether acknowledgements wait for the store.
    pub(super) fn holds_acks(&self) -> bool {
        self.publishing
            .as_ref()
            .is_some_and(|p| !p.held_acks.is_empty())
    }

    /// QoS 1 PUBLISHes whose PUBACK waits for the store.
    pub(super) fn held_pubacks(&self) -> usize {
        self.publishing.as_ref().map_or(0, |p| p.held_pubacks)
    }
}
