//! Packets from the client.

use aerie_core::{Message, OutFlight, SubscriptionSpec, Ticket, granted};
use aerie_proto::{
    AckProperties, Packet, PubResp, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

use aerie_core::metrics as m;
use tokio::time::Instant;

use super::{Close, Conn, Flow, HeldAck};

/// An acknowledgement the store could not back in time.
fn store_unavailable(mut ack: PubResp) -> PubResp {
    if ack.reason.0 < 0x80 {
        ack.reason = ReasonCode::UNSPECIFIED_ERROR;
        ack.properties.reason_string = Some("store_unavailable".into());
    }
    ack
}

impl Conn {
    pub(super) fn handle(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(ack) => {
                self.on_puback(ack);
                Flow::Continue
            }
            Packet::PubRec(rec) => {
                self.on_pubrec(rec);
                Flow::Continue
            }
            Packet::PubRel(rel) => {
                if !self.flight.released(rel.packet_id) {
                    self.send_ack(
                        Packet::PubComp,
                        rel.packet_id,
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    );
                    return Flow::Continue;
                }
                // The id may be reused after PUBCOMP: its removal must be durable first.
                let ticket = self.session.store_inbound_qos2(rel.packet_id, false);
                match self
                    .tenant
                    .released_inbound_qos2(&self.session, rel.packet_id)
                {
                    Some(removed) => self.hold_pubcomp(removed, rel.packet_id),
                    None => self.send_ack_after(
                        ticket,
                        Packet::PubComp,
                        rel.packet_id,
                        ReasonCode::SUCCESS,
                    ),
                }
                Flow::Continue
            }
            Packet::PubComp(comp) => {
                // A PUBCOMP for a message still awaiting PUBREC leaves it be.
                if self
                    .flight
                    .take_if(comp.packet_id, |f| matches!(f, OutFlight::Released))
                    .is_some()
                {
                    self.window_acknowledged(comp.packet_id);
                }
                Flow::Continue
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Flow::Continue
            }
            Packet::PingReq => {
                let _ = self.out.push(&Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Connect(_) => Close::by_server(ReasonCode::PROTOCOL_ERROR, "second_connect"),
            Packet::Auth(auth) => self.on_auth(auth),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Close::by_server(ReasonCode::PROTOCOL_ERROR, "server_packet_from_client")
            }
        }
    }

    pub(super) fn send_ack(
        &mut self,
        kind: fn(PubResp) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) {
        self.send_ack_after(0, kind, packet_id, reason);
    }

    /// Sends an acknowledgement once `ticket` is durable (at once if it is),
    /// never ahead of an earlier acknowledgement still waiting.
    fn send_ack_after(
        &mut self,
        ticket: Ticket,
        kind: fn(PubResp) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) {
        let packet = kind(PubResp {
            packet_id,
            reason,
            properties: AckProperties::default(),
        });
        let publishing = self.publishing();
        if publishing.held_acks.is_empty() && ticket <= *publishing.durable.borrow() {
            let _ = self.out.push(&packet);
        } else {
            let ticket = publishing
                .held_acks
                .back()
                .map_or(ticket, |held| ticket.max(held.ticket));
            if matches!(packet, Packet::PubAck(_)) {
                publishing.held_pubacks += 1;
            }
            publishing.held_acks.push_back(HeldAck {
                ticket,
                packet,
                since: Instant::now(),
            });
        }
    }

    /// Sends the held acknowledgements whose writes are now durable.
    pub(super) fn release_acks(&mut self) {
        let Some(publishing) = self.publishing.as_mut() else {
            return;
        };
        let durable = *publishing.durable.borrow_and_update();
        while let Some(held) = self.pop_held_if(|h| h.ticket <= durable) {
            let _ = self.out.push(&held.packet);
        }
    }

    /// The store has not made these acknowledgements' writes durable within
    /// `store_ack_timeout` (a failing disk). A v5 client is told: PUBACK or
    /// PUBREC 0x80, so it may publish again later; the exchange ends there.
    /// A 3.1.1 client cannot be told: it is disconnected without its acks
    /// and will resend. (A PUBCOMP only waits for the removal of an
    /// inbound id: it goes out as it is.)
    pub(super) fn expire_held_acks(&mut self) -> Flow {
        let timeout = self.config.store_ack_timeout;
        let version = if self.version.is_v5() { "5" } else { "3.1.1" };
        while let Some(held) = self.pop_held_if(|h| h.since.elapsed() >= timeout) {
            metrics::counter!(m::STORE_ACK_TIMEOUTS_TOTAL, "version" => version).increment(1);
            if !self.version.is_v5() {
                tracing::warn!(tenant = %self.tenant.id, client_id = %self.session.client_id, "store too slow for an acknowledgement; disconnecting the 3.1.1 client without it");
                return Close::by_server(ReasonCode::UNSPECIFIED_ERROR, "store_unavailable");
            }
            let packet = match held.packet {
                Packet::PubAck(ack) => Packet::PubAck(store_unavailable(ack)),
                Packet::PubRec(rec) => {
                    // The exchange ends with a failed PUBREC: forget the id.
                    if self.flight.released(rec.packet_id) {
                        // Nothing waits for these: the exchange ended.
                        self.session.store_inbound_qos2(rec.packet_id, false);
                        let _ = self
                            .tenant
                            .released_inbound_qos2(&self.session, rec.packet_id);
                    }
                    Packet::PubRec(store_unavailable(rec))
                }
                other => other,
            };
            let _ = self.out.push(&packet);
        }
        Flow::Continue
    }

    /// The cluster did not keep a PUBLISH in time (`Later::Unavailable`):
    /// neither routed nor acknowledged as kept. Answered as an ack the
    /// store could not back: v5 hears 0x80, 3.1.1 is disconnected and
    /// will resend.
    pub(super) fn refuse_unavailable(&mut self, qos: QoS, packet_id: u16) -> Flow {
        let version = if self.version.is_v5() { "5" } else { "3.1.1" };
        metrics::counter!(m::STORE_ACK_TIMEOUTS_TOTAL, "version" => version).increment(1);
        if !self.version.is_v5() {
            return Close::by_server(ReasonCode::UNSPECIFIED_ERROR, "store_unavailable");
        }
        let kind = match qos {
            QoS::ExactlyOnce => Packet::PubRec,
            _ => Packet::PubAck,
        };
        // Behind the acks already held, as any.
        self.send_ack_after(0, kind, packet_id, ReasonCode::UNSPECIFIED_ERROR);
        Flow::Continue
    }

    fn on_publish(&mut self, p: Publish) -> Flow {
        self.publishing();
        if !p.properties.subscription_identifiers.is_empty() {
            return Close::by_server(ReasonCode::PROTOCOL_ERROR, "subscription_id_from_client");
        }
        let topic = match self.inbound_aliases.resolve(
            &p.topic,
            p.properties.topic_alias,
            self.config.topic_alias_maximum,
        ) {
            Ok(t) => t,
            Err(reason) => return Close::by_server(reason, "topic_alias"),
        };
        if topic.starts_with('$') {
            return self.refuse_dollar_topic(&p);
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            return self.refuse_publish(&p, ReasonCode::PAYLOAD_FORMAT_INVALID);
        }
        let packet_id = p.packet_id.unwrap_or(0);
        if p.qos == QoS::ExactlyOnce && self.flight.awaits_pubrel(packet_id) {
            // A retransmission before PUBREL: already routed once.
            self.send_ack(Packet::PubRec, packet_id, ReasonCode::SUCCESS);
            return Flow::Continue;
        }
        // Receive Maximum bounds the QoS 1 and 2 PUBLISHes not yet
        // acknowledged (MQTT-3.3.4-9): QoS 2 until PUBREL, QoS 1 while its
        // PUBACK waits for the store. 3.1.1 has no Receive Maximum: there
        // only QoS 2 counts, as a bound on what the server keeps.
        let v5 = self.version.is_v5();
        if p.qos == QoS::ExactlyOnce || (p.qos == QoS::AtLeastOnce && v5) {
            let unacknowledged =
                self.flight.awaiting_pubrel() + if v5 { self.held_pubacks() } else { 0 };
            // Both maxima are at least 1: the usual case (nothing waiting)
            // reads no tenant limit.
            let tenant_inflight = || self.tenant.quota().inflight();
            if unacknowledged > 0
                && unacknowledged >= usize::from(self.config.receive_maximum.min(tenant_inflight()))
            {
                if tenant_inflight() < self.config.receive_maximum {
                    self.tenant.quota().refused(aerie_core::Limit::Inflight);
                }
                return Close::by_server(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive_maximum");
            }
        }
        if let Some(permissions) = &self.permissions
            && !permissions.may_publish(&topic)
        {
            return self.deny_publish(&p);
        }
        let (tenant, payload_len) = (&self.tenant, p.payload.len());
        if self
            .publishing
            .as_mut()
            .is_some_and(|publishing| publishing.rates.check_publish(tenant, payload_len).is_err())
        {
            return self.over_rate(p.qos, packet_id);
        }
        // A packet id another gateway recorded before it died: this PUBLISH
        // is that message's resend (DUP), or a new one reusing the id.
        let recorded = (p.qos == QoS::ExactlyOnce)
            .then(|| self.flight.take_recorded_qos2(packet_id))
            .flatten();
        let resent = recorded.filter(|_| p.dup);
        let message = Message::published(
            topic,
            p.payload,
            p.qos,
            p.retain,
            p.properties,
            self.tenant.node().origin(self.session.id),
            resent.unwrap_or_else(|| self.tenant.node().next_message_id()),
        );
        let published = match p.qos {
            QoS::ExactlyOnce if resent.is_some() => self.tenant.publish_resent(message),
            QoS::ExactlyOnce => self
                .tenant
                .publish_exactly_once(&self.session, packet_id, message),
            _ => self.tenant.publish(message),
        };
        if let Some(later) = published.stored_later {
            // Routed once the cluster has done its part (`held.rs`).
            self.hold_publish_ack(later, p.qos, packet_id);
            return Flow::Continue;
        }
        if published.refused.is_some() {
            // Over the tenant's retained quota: neither stored nor routed.
            return self.ack_unrouted(p.qos, packet_id, ReasonCode::QUOTA_EXCEEDED);
        }
        if published.congested.is_some() {
            self.publishing().backpressure = published.congested;
        }
        self.ack_published(p.qos, packet_id, published.ticket, published.matched);
        Flow::Continue
    }

    /// Acknowledges a routed PUBLISH once `ticket` is durable.
    pub(super) fn ack_published(
        &mut self,
        qos: QoS,
        packet_id: u16,
        ticket: Ticket,
        matched: usize,
    ) {
        let reason = if matched == 0 && self.version.is_v5() {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_ack_after(ticket, Packet::PubAck, packet_id, reason),
            QoS::ExactlyOnce => {
                self.flight.await_pubrel(packet_id);
                let ticket = ticket.max(self.session.store_inbound_qos2(packet_id, true));
                self.send_ack_after(ticket, Packet::PubRec, packet_id, reason);
            }
        }
    }

    /// Answers a PUBLISH we will not route: an error PUBACK/PUBREC on v5,
    /// closing the connection where the protocol has no other way to say it.
    fn refuse_publish(&mut self, p: &Publish, reason: ReasonCode) -> Flow {
        if !self.version.is_v5() {
            return Flow::Close(Close {
                disconnect: None,
                publish_will: true,
                why: "publish_refused",
            });
        }
        match p.qos {
            QoS::AtMostOnce => Close::by_server(reason, "publish_refused"),
            QoS::AtLeastOnce => {
                self.send_ack(Packet::PubAck, p.packet_id.unwrap_or(0), reason);
                Flow::Continue
            }
            QoS::ExactlyOnce => {
                self.send_ack(Packet::PubRec, p.packet_id.unwrap_or(0), reason);
                Flow::Continue
            }
        }
    }

    /// `$`-topics belong to the server (MQTT 5 §4.7.2): clients may not
    /// publish there. v5 hears 0x90; 3.1.1, which cannot say it, is answered
    /// like an ACL denial (acknowledged as usual, dropped, the connection
    /// stays up), so a client cannot tell a `$`-topic from a forbidden one.
    fn refuse_dollar_topic(&mut self, p: &Publish) -> Flow {
        metrics::counter!(crate::auth::ACL_DENIED_TOTAL, "action" => "publish_dollar_topic")
            .increment(1);
        if self.version.is_v5() {
            self.refuse_publish(p, ReasonCode::TOPIC_NAME_INVALID)
        } else {
            self.ack_unrouted(p.qos, p.packet_id.unwrap_or(0), ReasonCode::SUCCESS)
        }
    }

    /// A PUBLISH the token's `acl` does not allow is not routed: v5 says so
    /// in PUBACK/PUBREC (0x87); QoS 0 and 3.1.1, which cannot say it, are
    /// acknowledged as usual and dropped (the connection stays up).
    fn deny_publish(&mut self, p: &Publish) -> Flow {
        metrics::counter!(crate::auth::ACL_DENIED_TOTAL, "action" => "publish").increment(1);
        self.ack_unrouted(p.qos, p.packet_id.unwrap_or(0), ReasonCode::NOT_AUTHORIZED)
    }

    /// Answers a PUBLISH that is not routed for `reason`: v5 QoS 1/2 get it in
    /// PUBACK/PUBREC; QoS 0 and 3.1.1, which cannot say it, are acknowledged
    /// as usual and dropped (the connection stays up).
    pub(super) fn ack_unrouted(&mut self, qos: QoS, packet_id: u16, reason: ReasonCode) -> Flow {
        let reason = if self.version.is_v5() {
            reason
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_ack(Packet::PubAck, packet_id, reason),
            QoS::ExactlyOnce if reason.is_error() => {
                self.send_ack(Packet::PubRec, packet_id, reason)
            }
            QoS::ExactlyOnce => {
                // 3.1.1 goes on with PUBREL: remember the id so PUBCOMP follows.
                self.flight.await_pubrel(packet_id);
                self.send_ack(Packet::PubRec, packet_id, reason);
            }
        }
        Flow::Continue
    }

    /// A PUBLISH over the client's or the tenant's publish rate: v5 QoS 1/2
    /// get 0x97 (quota exceeded) in PUBACK/PUBREC, as 0x96 (message rate too
    /// high) is not allowed there (MQTT 5 §3.4.2.1), and may retry later;
    /// QoS 0 is dropped (counted); a 3.1.1 client's QoS 1/2 closes the
    /// connection unacknowledged (it resends after reconnecting, so nothing
    /// acknowledged is lost).
    fn over_rate(&mut self, qos: QoS, packet_id: u16) -> Flow {
        match qos {
            QoS::AtMostOnce => Flow::Continue,
            _ if !self.version.is_v5() => Flow::Close(Close {
                disconnect: None,
                publish_will: true,
                why: "publish_rate",
            }),
            QoS::AtLeastOnce => {
                self.send_ack(Packet::PubAck, packet_id, ReasonCode::QUOTA_EXCEEDED);
                Flow::Continue
            }
            QoS::ExactlyOnce => {
                self.send_ack(Packet::PubRec, packet_id, ReasonCode::QUOTA_EXCEEDED);
                Flow::Continue
            }
        }
    }

    fn on_puback(&mut self, ack: PubResp) {
        let is_qos1 =
            |f: &OutFlight| matches!(f, OutFlight::Publish(d) if d.qos == QoS::AtLeastOnce);
        match self.flight.take_if(ack.packet_id, is_qos1) {
            Some(OutFlight::Publish(d)) => {
                self.session.forget(d.stored_seq);
                self.window_acknowledged(ack.packet_id);
            }
            _ => tracing::debug!(
                packet_id = ack.packet_id,
                "PUBACK for no QoS 1 message in flight"
            ),
        }
    }

    fn on_pubrec(&mut self, rec: PubResp) {
        let is_qos2 = |f: &OutFlight| match f {
            OutFlight::Publish(d) => d.qos == QoS::ExactlyOnce,
            OutFlight::Released => true,
        };
        match self.flight.take_if(rec.packet_id, is_qos2) {
            Some(OutFlight::Publish(d)) => {
                // The client has the message now; what remains is PUBREL/PUBCOMP.
                self.session.forget(d.stored_seq);
                if rec.reason.is_error() {
                    // The receiver refused it: the flow ends here (MQTT 5 §4.3.3).
                    self.window_acknowledged(rec.packet_id);
                    return;
                }
                self.flight.insert(rec.packet_id, OutFlight::Released);
                self.send_pubrel(rec.packet_id);
            }
            Some(OutFlight::Released) => {
                // A duplicate PUBREC: send PUBREL again.
                self.flight.insert(rec.packet_id, OutFlight::Released);
                self.send_pubrel(rec.packet_id);
            }
            None if self.flight.contains(rec.packet_id) => {
                tracing::debug!(packet_id = rec.packet_id, "PUBREC for a QoS 1 message");
            }
            None => self.send_ack(
                Packet::PubRel,
                rec.packet_id,
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            ),
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Flow {
        let v5 = self.version.is_v5();
        let id = s.properties.subscription_identifier;
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        let mut retained_later = Vec::new();
        let mut live = Vec::new();
        for (filter, options) in &s.filters {
            if let Some(permissions) = &self.permissions
                && !permissions.may_subscribe(filter)
            {
                metrics::counter!(crate::auth::ACL_DENIED_TOTAL, "action" => "subscribe")
                    .increment(1);
                reasons.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let max_subscriptions = self.tenant.quota().subscriptions_per_client();
            if self.session.subscriptions_besides(filter) as u64 >= u64::from(max_subscriptions) {
                self.tenant
                    .quota()
                    .refused(aerie_core::Limit::Subscriptions);
                reasons.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let spec = SubscriptionSpec {
                options: *options,
                id,
            };
            match self.tenant.subscribe(&self.session, filter, spec) {
                Ok(sub) => {
                    reasons.push(granted(options.qos));
                    retained.extend(sub.retained);
                    retained_later.extend(sub.retained_later);
                    live.extend(sub.live);
                }
                Err(ReasonCode::PROTOCOL_ERROR) => {
                    return Close::by_server(ReasonCode::PROTOCOL_ERROR, "no_local_on_shared");
                }
                Err(reason) => reasons.push(if v5 {
                    reason
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                }),
            }
        }
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reasons,
            properties: AckProperties::default(),
        });
        self.send_suback(live, suback, retained, retained_later);
        Flow::Continue
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let reasons = if self.version.is_v5() {
            u.filters
                .iter()
                .map(|f| {
                    if self.tenant.unsubscribe(&self.session, f) {
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::NO_SUBSCRIPTION_EXISTED
                    }
                })
                .collect()
        } else {
            for f in &u.filters {
                self.tenant.unsubscribe(&self.session, f);
            }
            Vec::new()
        };
        let _ = self.out.push(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reasons,
            properties: AckProperties::default(),
        }));
    }

    fn on_disconnect(&mut self, d: aerie_proto::Disconnect) -> Flow {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.session_expiry == 0 && expiry != 0 {
                // MQTT 5 §3.14.2.2.2: a session that was to end cannot be revived here.
                return Close::by_server(ReasonCode::PROTOCOL_ERROR, "disconnect_expiry");
            }
            self.session_expiry = expiry
                .min(self.tenant.config().max_session_expiry)
                .min(self.tenant.quota().session_expiry_max());
        }
        let publish_will = d.reason == ReasonCode::DISCONNECT_WITH_WILL;
        Flow::Close(Close {
            disconnect: None,
            publish_will,
            why: "client_disconnect",
        })
    }
}
