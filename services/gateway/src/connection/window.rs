//! A persistent session's outbound window, recorded off the node in the
//! scale-out shape (`SessionRecords::keeps_windows`), so that the session,
//! resumed on another gateway after this one died, resends what was in
//! flight as MQTT says (DUP under the same packet id, or PUBREL) and never
//! delivers a QoS 2 message twice:
//! - a QoS 2 PUBLISH goes out only once the record holds its packet id and
//!   message (else a resume elsewhere would send it anew, under another
//!   id, to a client that has it already);
//! - a PUBREL only once the record says released (else a resume would
//!   send the PUBLISH again to a client that forgot its id);
//! - QoS 1 sends, PUBACKs and PUBCOMPs are written with the record's next
//!   write (a stale record costs a QoS 1 duplicate or a PUBREL, both
//!   allowed).
//!
//! Changes are collected per batch (a pump, a read) and told in one call;
//! what must wait goes out when the record holds it (`Held::Window`).
//! The embedded shape records nothing here: `Conn::window` is `None`.

use aerie_core::seams::{FlightStage, RecordedFlight, WindowChange};
use aerie_core::{Delivery, OutFlight};
use aerie_proto::{Packet, QoS, ReasonCode};

use super::held::Held;
use super::{Close, Conn, Flow};

/// The changes of one batch and the packets waiting for them.
#[derive(Default)]
pub(crate) struct WindowRecord {
    changes: Vec<WindowChange>,
    /// Packets that go out once the record holds `changes`, in order.
    unsent: Vec<Unsent>,
}

/// A packet held until the record holds the window it belongs to.
pub(crate) enum Unsent {
    /// A delivery (in the flight already when it has a packet id); the
    /// ones behind a QoS 2 PUBLISH wait with it, so the order holds.
    Publish(Delivery, Option<u16>),
    PubRel(u16),
}

impl WindowRecord {
    fn waits(&self) -> bool {
        !self.unsent.is_empty()
    }
}

impl Conn {
    /// Whether `d`, about to go out under `packet_id`, must wait for the
    /// record (then it is taken, and in the flight); else it is noted for
    /// the record's next write, and the caller sends it.
    pub(super) fn defer_for_window(
        &mut self,
        d: Delivery,
        packet_id: Option<u16>,
    ) -> Option<(Delivery, Option<u16>)> {
        let Some(w) = self.window.as_deref_mut() else {
            return Some((d, packet_id));
        };
        if let Some(id) = packet_id {
            let state = if d.qos == QoS::ExactlyOnce {
                FlightStage::Qos2
            } else {
                FlightStage::Qos1
            };
            w.changes.push(WindowChange::Sent(RecordedFlight {
                packet_id: id,
                id: d.message.id,
                state,
            }));
            if state == FlightStage::Qos2 || w.waits() {
                self.flight.insert(id, OutFlight::Publish(d.clone()));
                w.unsent.push(Unsent::Publish(d, Some(id)));
                return None;
            }
        } else if w.waits() {
            w.unsent.push(Unsent::Publish(d, None));
            return None;
        }
        Some((d, packet_id))
    }

    /// Sends PUBREL for an outbound QoS 2 message the client has (PUBREC),
    /// once the record says so.
    pub(super) fn send_pubrel(&mut self, packet_id: u16) {
        match self.window.as_deref_mut() {
            Some(w) => {
                w.changes.push(WindowChange::Released(packet_id));
                w.unsent.push(Unsent::PubRel(packet_id));
            }
            None => self.send_ack(Packet::PubRel, packet_id, ReasonCode::SUCCESS),
        }
    }

    /// Notes that an outbound exchange ended (PUBACK, PUBCOMP).
    pub(super) fn window_acknowledged(&mut self, packet_id: u16) {
        if let Some(w) = self.window.as_deref_mut() {
            w.changes.push(WindowChange::Acknowledged(packet_id));
        }
    }

    /// Tells the record this batch's changes. What must wait for it is
    /// held (`Held::Window`) unless another answer is held already: then
    /// the changes wait for the next batch, after it.
    pub(super) fn flush_window(&mut self) {
        if self.held.is_some() {
            return;
        }
        let Some(w) = self.window.as_deref_mut() else {
            return;
        };
        if w.changes.is_empty() && !w.waits() {
            return;
        }
        let changes = std::mem::take(&mut w.changes);
        let wait = w.waits();
        match self.tenant.window_changed(&self.session, changes, wait) {
            Some(recorded) if wait => self.held = Some(Box::new(Held::Window { recorded })),
            // The seam records nothing to wait for: out at once.
            None if wait => {
                let _ = self.send_unsent();
            }
            _ => {}
        }
    }

    /// The connection ends: what it changed goes with the record's next
    /// write; what was held never went out (it is in the flight, resent
    /// with DUP wherever the session resumes).
    pub(super) fn flush_window_at_close(&mut self) {
        if let Some(w) = self.window.as_deref_mut()
            && !w.changes.is_empty()
        {
            let changes = std::mem::take(&mut w.changes);
            let _ = self.tenant.window_changed(&self.session, changes, false);
        }
    }

    /// The record holds the window (`recorded`): the held packets go out.
    /// Not held: the connection closes (the flights stay in its session).
    pub(super) fn window_recorded(&mut self, recorded: bool) -> Flow {
        if !recorded {
            tracing::warn!(tenant = %self.tenant.id, client_id = %self.session.client_id, "the session record did not take the outbound window; closing");
            return Close::by_server(ReasonCode::UNSPECIFIED_ERROR, "store_unavailable");
        }
        self.send_unsent()
    }

    fn send_unsent(&mut self) -> Flow {
        let unsent = self
            .window
            .as_deref_mut()
            .map(|w| std::mem::take(&mut w.unsent))
            .unwrap_or_default();
        let mut sent = super::outbound::Sent::default();
        let now_ms = aerie_core::store::unix_ms_now();
        for packet in unsent {
            match packet {
                Unsent::Publish(d, packet_id) => {
                    self.deliver(d, packet_id, true, now_ms, &mut sent)
                }
                Unsent::PubRel(id) => self.send_ack(Packet::PubRel, id, ReasonCode::SUCCESS),
            }
        }
        self.count_sent(&sent);
        self.pump();
        Flow::Continue
    }
}
