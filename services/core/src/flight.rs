//! The outbound in-flight window and inbound QoS 2 ids of one session.
//!
//! Lookups by packet id are O(1) (acks arrive for any id); send order is kept
//! beside it for retransmission on resume. An ack removes the id from the
//! map only; the order queue drops such stale entries lazily.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::message::{Delivery, MessageId};

/// An outbound QoS 1/2 message the client has not finished acknowledging.
#[derive(Debug, Clone)]
pub enum OutFlight {
    /// Sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Delivery),
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// Protocol state that lives in the connection while one is attached.
///
/// Its maps are made on the first flight: this struct is part of every
/// connection's task, and most connections (idle, or QoS 0 only) never have
/// one, so it costs them 16 bytes instead of 144.
#[derive(Debug, Default)]
pub struct FlightState {
    windows: Option<Box<Windows>>,
    next_packet_id: u16,
}

#[derive(Debug, Default)]
struct Windows {
    /// Packet id → (send order, flight).
    outbound: HashMap<u16, (u64, OutFlight)>,
    /// Send order → packet id, oldest first; entries whose id was
    /// acknowledged (or reused under a later order) are stale.
    order: VecDeque<(u64, u16)>,
    next_order: u64,
    /// Inbound QoS 2 packet ids that got PUBREC and await PUBREL.
    inbound_qos2: HashSet<u16>,
    /// Inbound QoS 2 ids another node recorded, with their message's id,
    /// before it routed them and died (scale-out): whether it routed them
    /// is not known here; a resend (DUP) of one is routed only if the log
    /// does not hold its message already.
    recorded_qos2: HashMap<u16, MessageId>,
}

impl FlightState {
    fn windows(&mut self) -> &mut Windows {
        self.windows.get_or_insert_with(Default::default)
    }

    /// Outbound flights in progress (what counts against receive maximum).
    pub fn len(&self) -> usize {
        self.windows.as_ref().map_or(0, |w| w.outbound.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next packet id not in use by an outbound flight; None when all
    /// 65,535 are (callers keep the window far below that).
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            let id = self.next_packet_id;
            if id != 0 && !self.contains(id) {
                return Some(id);
            }
        }
    }

    /// Records a flight as the newest.
    pub fn insert(&mut self, packet_id: u16, flight: OutFlight) {
        let w = self.windows();
        let order = w.next_order;
        w.next_order += 1;
        w.outbound.insert(packet_id, (order, flight));
        w.order.push_back((order, packet_id));
    }

    /// Removes and returns the flight with this packet id if `wanted` accepts
    /// it; a flight of the wrong kind stays where it was.
    pub fn take_if(
        &mut self,
        packet_id: u16,
        wanted: impl FnOnce(&OutFlight) -> bool,
    ) -> Option<OutFlight> {
        let w = self.windows.as_mut()?;
        if !wanted(&w.outbound.get(&packet_id)?.1) {
            return None;
        }
        let (_, flight) = w.outbound.remove(&packet_id)?;
        w.drop_stale_front();
        Some(flight)
    }

    /// Whether a flight with this id exists.
    pub fn contains(&self, packet_id: u16) -> bool {
        self.windows
            .as_ref()
            .is_some_and(|w| w.outbound.contains_key(&packet_id))
    }

    /// When this node received the message of the oldest flight still
    /// waiting for PUBACK or PUBREC (a released one's client has it).
    pub fn oldest_unacknowledged(&self) -> Option<tokio::time::Instant> {
        self.in_order().find_map(|(_, f)| match f {
            OutFlight::Publish(d) => Some(d.message.received_at),
            OutFlight::Released => None,
        })
    }

    /// Flights in send order.
    pub fn in_order(&self) -> impl Iterator<Item = (u16, &OutFlight)> {
        self.windows.iter().flat_map(|w| {
            w.order
                .iter()
                .filter_map(|(order, id)| match w.outbound.get(id) {
                    Some((o, f)) if o == order => Some((*id, f)),
                    _ => None,
                })
        })
    }

    /// Keeps the flights `keep` accepts, removing (and returning) the others.
    pub fn extract(&mut self, mut remove: impl FnMut(&OutFlight) -> bool) -> Vec<OutFlight> {
        let ids: Vec<u16> = self
            .in_order()
            .filter(|(_, f)| remove(f))
            .map(|(id, _)| id)
            .collect();
        let Some(w) = self.windows.as_mut() else {
            return Vec::new();
        };
        let out = ids
            .iter()
            .filter_map(|id| w.outbound.remove(id).map(|(_, f)| f))
            .collect();
        w.drop_stale_front();
        out
    }

    /// Whether an inbound QoS 2 message with this id got PUBREC and awaits
    /// its PUBREL.
    pub fn awaits_pubrel(&self, packet_id: u16) -> bool {
        self.windows
            .as_ref()
            .is_some_and(|w| w.inbound_qos2.contains(&packet_id))
    }

    /// Inbound QoS 2 messages awaiting PUBREL (or their resend, when
    /// another node recorded them).
    pub fn awaiting_pubrel(&self) -> usize {
        self.windows
            .as_ref()
            .map_or(0, |w| w.inbound_qos2.len() + w.recorded_qos2.len())
    }

    /// Records that an inbound QoS 2 message got PUBREC.
    pub fn await_pubrel(&mut self, packet_id: u16) {
        self.windows().inbound_qos2.insert(packet_id);
    }

    /// Forgets an inbound QoS 2 id (its PUBREL came): whether it was there.
    pub fn released(&mut self, packet_id: u16) -> bool {
        self.windows.as_mut().is_some_and(|w| {
            let recorded = w.recorded_qos2.remove(&packet_id).is_some();
            w.inbound_qos2.remove(&packet_id) || recorded
        })
    }

    /// Inbound QoS 2 ids that a node now gone recorded before routing their
    /// messages (a session resumed from another node's record).
    pub fn restore_recorded_qos2(&mut self, ids: Vec<(u16, MessageId)>) {
        if !ids.is_empty() {
            self.windows().recorded_qos2 = ids.into_iter().collect();
        }
    }

    /// The id of the message another node recorded under `packet_id`
    /// (forgotten here: a PUBLISH with this packet id is that message's
    /// resend, or a new message once the client had its PUBCOMP).
    pub fn take_recorded_qos2(&mut self, packet_id: u16) -> Option<MessageId> {
        self.windows.as_mut()?.recorded_qos2.remove(&packet_id)
    }

    /// Restores the inbound QoS 2 ids of a stored session.
    pub fn restore_inbound_qos2(&mut self, ids: Vec<u16>) {
        if !ids.is_empty() {
            self.windows().inbound_qos2 = ids.into_iter().collect();
        }
    }
}

impl Windows {
    fn drop_stale_front(&mut self) {
        while let Some((order, id)) = self.order.front() {
            match self.outbound.get(id) {
                Some((o, _)) if o == order => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
        // Acks out of order leave stale entries behind a live front: compact
        // once they dominate, so memory stays proportional to the window.
        if self.order.len() > 2 * self.outbound.len() + 64 {
            let outbound = &self.outbound;
            self.order
                .retain(|(order, id)| outbound.get(id).is_some_and(|(o, _)| o == order));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_skip_zero_and_ids_in_flight() {
        let mut f = FlightState {
            next_packet_id: u16::MAX - 1,
            ..Default::default()
        };
        f.insert(1, OutFlight::Released);
        assert_eq!(f.allocate_packet_id(), Some(u16::MAX));
        assert_eq!(f.allocate_packet_id(), Some(2));
    }

    #[test]
    fn acks_in_any_order_keep_send_order_of_the_rest() {
        let mut f = FlightState::default();
        for id in 1..=5 {
            f.insert(id, OutFlight::Released);
        }
        assert!(f.take_if(3, |_| true).is_some());
        assert!(f.take_if(1, |_| true).is_some());
        f.insert(1, OutFlight::Released);
        let ids: Vec<u16> = f.in_order().map(|(id, _)| id).collect();
        assert_eq!(ids, [2, 4, 5, 1]);
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn wrong_kind_is_left_in_place() {
        let mut f = FlightState::default();
        f.insert(7, OutFlight::Released);
        assert!(
            f.take_if(7, |f| matches!(f, OutFlight::Publish(_)))
                .is_none()
        );
        assert!(f.contains(7));
    }

    #[test]
    fn no_maps_until_the_first_flight_and_inbound_ids_come_and_go() {
        let mut f = FlightState::default();
        assert!(f.windows.is_none());
        assert!(f.take_if(1, |_| true).is_none());
        assert!(!f.released(1));
        assert_eq!(f.in_order().count(), 0);
        assert!(f.windows.is_none(), "a lookup made the maps");
        f.await_pubrel(9);
        assert!(f.awaits_pubrel(9));
        assert_eq!(f.awaiting_pubrel(), 1);
        assert!(f.released(9));
        assert!(!f.awaits_pubrel(9));
    }

    #[test]
    fn ids_recorded_by_another_node_are_taken_once_or_released() {
        let mut f = FlightState::default();
        let id = |seq| MessageId {
            seq,
            ..MessageId::default()
        };
        f.restore_recorded_qos2(vec![(1, id(10)), (2, id(20))]);
        assert_eq!(f.awaiting_pubrel(), 2, "they count against Receive Maximum");
        assert_eq!(f.take_recorded_qos2(1), Some(id(10)));
        assert_eq!(f.take_recorded_qos2(1), None);
        assert!(
            f.released(2),
            "a PUBREL for a recorded id is answered as known"
        );
        assert_eq!(f.take_recorded_qos2(2), None);
        assert_eq!(f.awaiting_pubrel(), 0);
    }

    #[test]
    fn stale_order_entries_stay_bounded() {
        let mut f = FlightState::default();
        f.insert(1, OutFlight::Released);
        for round in 0..10_000u32 {
            let id = (round % 1000) as u16 + 2;
            f.insert(id, OutFlight::Released);
            f.take_if(id, |_| true);
        }
        let order = f.windows.as_ref().map_or(0, |w| w.order.len());
        assert!(order <= 2 * f.len() + 64 + 1, "{order}");
    }
}
