//! Deliveries to the client: from the session queue into PUBLISH packets,
//! never more QoS 1/2 in flight than the client's receive maximum.

use aerie_core::metrics::{self as m, DropReason, count_drop};
use aerie_core::store::unix_ms_now;
use aerie_core::{Delivery, OutFlight};
use aerie_proto::{Packet, Publish, PublishProperties, QoS};
use tokio::time::Instant;

use super::Conn;
use super::aliases::AliasUse;

thread_local! {
    /// The batch buffer `pump` drains a session's queue into: one per worker
    /// thread, lent to each pump (which never awaits). Kept in each
    /// connection, a burst's capacity (up to the receive window) would stay
    /// with every subscriber that ever had one.
    static BATCH: std::cell::Cell<Vec<aerie_core::Delivery>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What a batch of deliveries sent, for the counters.
#[derive(Default)]
pub(super) struct Sent {
    delivered: u64,
    metered: u64,
    metered_bytes: u64,
}

impl Conn {
    /// Moves what the session has queued into the outbox, as far as the
    /// client's window allows, once the socket took the previous batch: the
    /// bounded session queue is where a slow client's backlog waits (and
    /// overflows into counted drops), never the outbox.
    pub(super) fn pump(&mut self) {
        // A batch waiting for the session record goes first.
        if self.out.is_pending() || self.held.is_some() {
            return;
        }
        let window = usize::from(
            self.client_receive_maximum
                .min(self.tenant.quota().inflight()),
        )
        .saturating_sub(self.flight.len());
        let mut batch = BATCH.take();
        self.session.drain(window, &mut batch);
        // Expiry is wall-clock (it crosses nodes): read the clock once a batch.
        let now_ms = unix_ms_now();
        let mut sent = Sent::default();
        for d in batch.drain(..) {
            if d.message.is_expired(now_ms) {
                count_drop(DropReason::Expired, 1);
                self.session.forget(d.stored_seq);
                continue;
            }
            // The window keeps the flight far below 65,535, so an id is always free.
            let packet_id = match d.qos {
                QoS::AtMostOnce => None,
                _ => self.flight.allocate_packet_id(),
            };
            if let Some((d, packet_id)) = self.defer_for_window(d, packet_id) {
                self.deliver(d, packet_id, false, now_ms, &mut sent);
            }
        }
        BATCH.set(batch);
        self.count_sent(&sent);
        self.flush_window();
    }

    /// Sends one delivery under `packet_id` (`in_flight`: it is in the
    /// flight already) and counts it in `sent`.
    pub(super) fn deliver(
        &mut self,
        d: Delivery,
        packet_id: Option<u16>,
        in_flight: bool,
        now_ms: u64,
        sent: &mut Sent,
    ) {
        if self.send_publish(&d, packet_id, false, now_ms) {
            sent.delivered += 1;
            if d.message.is_metered() {
                sent.metered += 1;
                sent.metered_bytes += d.message.payload.len() as u64;
            }
            // Sampled: the first message of a batch (the oldest, so the
            // slowest) and every 64th, to keep the histogram off the
            // per-message path.
            if sent.delivered % 64 == 1 {
                m::hot().publish_to_deliver.record(
                    Instant::now()
                        .saturating_duration_since(d.message.received_at)
                        .as_secs_f64(),
                );
            }
            if let Some(id) = packet_id
                && !in_flight
            {
                self.flight.insert(id, OutFlight::Publish(d));
            }
        } else {
            // Over the client's maximum packet size: MQTT 5 §3.1.2.11.4
            // says discard it as if it had been delivered.
            count_drop(DropReason::TooLargeForClient, 1);
            if let Some(id) = packet_id.filter(|_| in_flight) {
                self.flight.take_if(id, |_| true);
                self.window_acknowledged(id);
            }
            self.session.forget(d.stored_seq);
        }
    }

    pub(super) fn count_sent(&self, sent: &Sent) {
        if sent.delivered > 0 {
            m::hot().delivered.increment(sent.delivered);
            self.tenant
                .usage()
                .delivered(sent.metered, sent.metered_bytes);
        }
    }

    /// Resends what the client had not acknowledged when its last connection
    /// ended: PUBLISH with DUP set, and PUBREL (MQTT 5 §4.4).
    pub(super) fn resend_inflight(&mut self) {
        let now_ms = unix_ms_now();
        let flights: Vec<(u16, OutFlight)> = self
            .flight
            .in_order()
            .map(|(id, f)| (id, f.clone()))
            .collect();
        for (id, f) in flights {
            match f {
                OutFlight::Publish(d) => {
                    self.send_publish(&d, Some(id), true, now_ms);
                }
                OutFlight::Released => {
                    let _ = self.out.push(&Packet::PubRel(aerie_proto::PubResp {
                        packet_id: id,
                        ..Default::default()
                    }));
                }
            }
        }
    }

    fn send_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now_ms: u64,
    ) -> bool {
        let msg = &d.message;
        let mut topic = msg.topic.clone();
        let mut properties = PublishProperties::default();
        if self.version.is_v5() {
            properties = msg.properties.clone();
            properties.message_expiry_interval = msg.remaining_expiry(now_ms);
            properties.subscription_identifiers = d.subscription_ids.to_vec();
            // A resend carries the full topic: the client's alias table was reset.
            match if dup {
                AliasUse::None
            } else {
                self.outbound_aliases.lookup(&topic)
            } {
                AliasUse::None => {}
                AliasUse::Assign(a) => properties.topic_alias = Some(a),
                AliasUse::Reuse(a) => {
                    properties.topic_alias = Some(a);
                    topic = "".into();
                }
            }
        }
        let packet = Packet::Publish(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            payload: msg.payload.clone(),
            properties,
        });
        matches!(self.out.push(&packet), Ok(true))
    }
}
