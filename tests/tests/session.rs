//! Sessions: clean start, session present, session expiry, offline queues,
//! takeover, and keep alive.

use std::time::Duration;

use aerie_e2e::raw::connect_packet;
use aerie_e2e::{RawClient, Server};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

const QUIET: Duration = Duration::from_millis(500);
const DROPPED: &str = "aerie_messages_dropped_total";

async fn publisher(server: &Server) -> RawClient {
    RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true)
        .await
        .0
}

/// Publishes and checks the message reached the subscriber or not.
async fn probe(publ: &mut RawClient, sub: &mut RawClient, topic: &str, expect: bool) {
    publ.publish_acked(topic, b"probe", QoS::AtLeastOnce, false, 100)
        .await;
    if expect {
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], b"probe");
        sub.ack(&p).await;
    } else {
        sub.expect_silence(QUIET).await;
    }
}

// ---- clean start / session present ----

#[tokio::test]
async fn v5_resumed_session_is_present_and_keeps_its_subscriptions() {
    let server = Server::start(&[]);
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(!ack.session_present, "no session existed");
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(ack.session_present);
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut c, "t", true).await;
}

#[tokio::test]
async fn v5_clean_start_discards_the_old_session_and_its_subscriptions() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"queued", QoS::AtLeastOnce, false, 1)
        .await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", true, 60).await;
    assert!(!ack.session_present);
    c.expect_silence(QUIET).await; // the queued message went with the session
    probe(&mut publ, &mut c, "t", false).await;
}

#[tokio::test]
async fn v5_session_expiry_0_ends_the_session_at_disconnect() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 0).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(!ack.session_present);
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut c, "t", false).await;
}

#[tokio::test]
async fn v5_short_session_expiry_ends_the_session_after_the_interval() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 1).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"meanwhile", QoS::AtLeastOnce, false, 1)
        .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(!ack.session_present, "expired after 1 s");
    c.expect_silence(QUIET).await;
    probe(&mut publ, &mut c, "t", false).await;
}

#[tokio::test]
async fn v5_short_session_expiry_is_resumed_within_the_interval() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 2).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"meanwhile", QoS::AtLeastOnce, false, 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 2).await;
    assert!(ack.session_present);
    assert_eq!(&c.recv_publish().await.payload[..], b"meanwhile");
}

#[tokio::test]
async fn v5_resumed_session_gets_a_fresh_expiry_timer() {
    // Expiry 2 s; resume at 1 s, leave again: the session must live until
    // ~2 s after the second disconnect, not end at the first timer.
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 2).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 2).await;
    assert!(ack.session_present);
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 2).await;
    assert!(
        ack.session_present,
        "2.5 s after the first disconnect, 1.5 s after the second"
    );
}

#[tokio::test]
async fn v5_session_expiry_max_never_expires() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, u32::MAX).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"later", QoS::AtLeastOnce, false, 1)
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "s", false, u32::MAX).await;
    assert!(ack.session_present);
    assert_eq!(&c.recv_publish().await.payload[..], b"later");
}

#[tokio::test]
async fn v5_max_session_expiry_caps_the_requested_expiry_and_connack_says_so() {
    let server = Server::start(&["--max-session-expiry", "10"]);
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "long", true, 3600).await;
    assert_eq!(ack.properties.session_expiry_interval, Some(10));
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "forever", true, u32::MAX).await;
    assert_eq!(ack.properties.session_expiry_interval, Some(10));
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "short", true, 5).await;
    assert_eq!(
        ack.properties.session_expiry_interval, None,
        "an accepted expiry is not echoed"
    );
}

#[tokio::test]
async fn v311_clean_session_0_keeps_subscriptions_and_queued_qos1_messages() {
    let server = Server::start(&[]);
    let v3 = ProtocolVersion::V311;
    let (mut c, ack) = RawClient::connect(server.mqtt, v3, "s3", false).await;
    assert!(!ack.session_present);
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"queued", QoS::AtLeastOnce, false, 1)
        .await;
    let (mut c, ack) = RawClient::connect(server.mqtt, v3, "s3", false).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!((&p.payload[..], p.qos), (&b"queued"[..], QoS::AtLeastOnce));
    c.ack(&p).await;
    probe(&mut publ, &mut c, "t", true).await;
}

#[tokio::test]
async fn v311_clean_session_1_discards_the_previous_session() {
    let server = Server::start(&[]);
    let v3 = ProtocolVersion::V311;
    let (mut c, _) = RawClient::connect(server.mqtt, v3, "s3", false).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (c, ack) = RawClient::connect(server.mqtt, v3, "s3", true).await;
    assert!(!ack.session_present);
    c.disconnect().await;
    // Clean session 1 leaves nothing behind either.
    let (mut c, ack) = RawClient::connect(server.mqtt, v3, "s3", false).await;
    assert!(!ack.session_present);
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut c, "t", false).await;
}

// ---- offline queues ----

/// A persistent v5 session subscribed to "t" at QoS 1, now offline.
async fn offline_subscriber(server: &Server) {
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "off", false, 60).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.disconnect().await;
}

#[tokio::test]
async fn offline_qos1_messages_are_delivered_in_order_on_resume() {
    let server = Server::start(&[]);
    offline_subscriber(&server).await;
    let mut publ = publisher(&server).await;
    for i in 0..5u16 {
        publ.publish_acked(
            "t",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        )
        .await;
    }
    let (mut c, ack) = RawClient::connect_v5(server.mqtt, "off", false, 60).await;
    assert!(ack.session_present);
    for i in 0..5 {
        let p = c.recv_publish().await;
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes());
        assert_eq!((p.qos, p.dup), (QoS::AtLeastOnce, false));
        c.ack(&p).await;
    }
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn offline_queue_is_bounded_and_counts_queue_full_drops() {
    let server = Server::start(&["--max-queued-messages", "5"]);
    offline_subscriber(&server).await;
    let mut publ = publisher(&server).await;
    for i in 0..8u16 {
        let reason = publ
            .publish_acked(
                "t",
                format!("m{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                i + 1,
            )
            .await;
        // There is a matching subscriber, even when its queue is full.
        assert_eq!(reason, ReasonCode::SUCCESS, "PUBACK for m{i}");
    }
    assert_eq!(
        server.wait_metric(DROPPED, "reason=\"queue_full\"", 3.0),
        3.0
    );
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "off", false, 60).await;
    for i in 0..5 {
        let p = c.recv_publish().await;
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes(), "the first five");
        c.ack(&p).await;
    }
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn offline_qos0_is_not_queued_and_counted_as_offline_qos0() {
    let server = Server::start(&[]);
    offline_subscriber(&server).await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"q0", QoS::AtMostOnce, false, 0)
        .await;
    publ.publish_acked("t", b"q1", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(
        server.wait_metric(DROPPED, "reason=\"offline_qos0\"", 1.0),
        1.0
    );
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "off", false, 60).await;
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"q1", "only the QoS 1 message was queued");
    c.ack(&p).await;
    c.expect_silence(QUIET).await;
}

// ---- takeover ----

#[tokio::test]
async fn v5_second_connect_takes_over_with_disconnect_0x8e_and_keeps_the_session() {
    let server = Server::start(&[]);
    let (mut first, _) = RawClient::connect_v5(server.mqtt, "same", false, 60).await;
    first.subscribe(1, "t", QoS::AtLeastOnce).await;
    let (mut second, ack) = RawClient::connect_v5(server.mqtt, "same", false, 60).await;
    assert!(ack.session_present);
    assert_eq!(
        first.expect_closed().await,
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut second, "t", true).await;
}

#[tokio::test]
async fn v5_takeover_with_clean_start_starts_a_new_session() {
    let server = Server::start(&[]);
    let (mut first, _) = RawClient::connect_v5(server.mqtt, "same", false, 60).await;
    first.subscribe(1, "t", QoS::AtLeastOnce).await;
    let (mut second, ack) = RawClient::connect_v5(server.mqtt, "same", true, 60).await;
    assert!(!ack.session_present);
    assert_eq!(
        first.expect_closed().await,
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut second, "t", false).await;
}

#[tokio::test]
async fn v311_second_connect_closes_the_first_and_keeps_the_session() {
    let server = Server::start(&[]);
    let v3 = ProtocolVersion::V311;
    let (mut first, _) = RawClient::connect(server.mqtt, v3, "same3", false).await;
    first.subscribe(1, "t", QoS::AtLeastOnce).await;
    let (mut second, ack) = RawClient::connect(server.mqtt, v3, "same3", false).await;
    assert!(ack.session_present);
    assert_eq!(first.expect_closed().await, None, "3.1.1: just closed");
    let mut publ = publisher(&server).await;
    probe(&mut publ, &mut second, "t", true).await;
}

#[tokio::test]
async fn v5_unacked_message_of_taken_over_connection_is_resent_to_the_new_one() {
    let server = Server::start(&[]);
    let (mut first, _) = RawClient::connect_v5(server.mqtt, "same", false, 60).await;
    first.subscribe(1, "t", QoS::AtLeastOnce).await;
    let mut publ = publisher(&server).await;
    publ.publish_acked("t", b"inflight", QoS::AtLeastOnce, false, 1)
        .await;
    let p = first.recv_publish().await;
    let (mut second, ack) = RawClient::connect_v5(server.mqtt, "same", false, 60).await;
    assert!(ack.session_present);
    let again = second.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.packet_id, p.packet_id);
    assert_eq!(&again.payload[..], b"inflight");
}

// ---- keep alive ----

async fn with_keep_alive(server: &Server, version: ProtocolVersion, secs: u16) -> RawClient {
    let mut c = connect_packet(version, "ka", true);
    c.keep_alive = secs;
    let (c, ack) = RawClient::connect_with(server.mqtt, c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

#[tokio::test]
async fn silent_v5_connection_is_closed_after_one_and_a_half_keep_alive_not_before() {
    let server = Server::start(&[]);
    let mut c = with_keep_alive(&server, ProtocolVersion::V5, 2).await;
    let start = Instant::now();
    c.expect_silence(Duration::from_millis(2500)).await; // still open at 2.5 s
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_millis(2900) && closed < Duration::from_millis(3800),
        "closed after {closed:?}, expected ~3 s"
    );
}

#[tokio::test]
async fn silent_v311_connection_is_closed_after_one_and_a_half_keep_alive() {
    let server = Server::start(&[]);
    let mut c = with_keep_alive(&server, ProtocolVersion::V311, 1).await;
    let start = Instant::now();
    c.expect_silence(Duration::from_millis(1200)).await;
    assert_eq!(c.expect_closed().await, None);
    assert!(start.elapsed() < Duration::from_millis(2300));
}

#[tokio::test]
async fn pingreq_keeps_the_connection_open_past_the_keep_alive() {
    let server = Server::start(&[]);
    let mut c = with_keep_alive(&server, ProtocolVersion::V5, 2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    // Without that PINGREQ the connection would be closed at 3 s.
    c.expect_silence(Duration::from_millis(2500)).await;
    c.send(Packet::PingReq).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PingResp),
        "still open at 3.5 s"
    );
}

#[tokio::test]
async fn server_keep_alive_is_announced_when_the_client_asks_for_more_or_for_none() {
    let server = Server::start(&["--max-keep-alive", "5"]);
    for asked in [60, 0] {
        let mut c = connect_packet(ProtocolVersion::V5, "ka", true);
        c.keep_alive = asked;
        let (_c, ack) = RawClient::connect_with(server.mqtt, c).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert_eq!(
            ack.properties.server_keep_alive,
            Some(5),
            "client asked for {asked}"
        );
    }
    let mut c = connect_packet(ProtocolVersion::V5, "ka", true);
    c.keep_alive = 3;
    let (_c, ack) = RawClient::connect_with(server.mqtt, c).await;
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "3 is within the limit"
    );
}

#[tokio::test]
async fn server_keep_alive_is_enforced() {
    let server = Server::start(&["--max-keep-alive", "1"]);
    let mut c = with_keep_alive(&server, ProtocolVersion::V5, 60).await;
    let start = Instant::now();
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_millis(1300) && closed < Duration::from_millis(2500),
        "closed after {closed:?}, expected ~1.5 s"
    );
}

#[tokio::test]
async fn v5_disconnect_with_session_expiry_0_ends_a_persistent_session() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    c.subscribe(1, "t", QoS::AtLeastOnce).await;
    c.send(Packet::Disconnect(aerie_proto::Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: aerie_proto::DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    }))
    .await;
    assert_eq!(c.expect_closed().await, None);
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn v5_disconnect_cannot_revive_a_session_with_expiry_0() {
    let server = Server::start(&[]);
    let (mut c, _) = RawClient::connect_v5(server.mqtt, "s", false, 0).await;
    c.send(Packet::Disconnect(aerie_proto::Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: aerie_proto::DisconnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        },
    }))
    .await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
    let (_c, ack) = RawClient::connect_v5(server.mqtt, "s", false, 60).await;
    assert!(!ack.session_present);
}
