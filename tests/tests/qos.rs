//! QoS 0/1/2 in both directions, QoS downgrade, retransmission on resume and
//! exactly-once for inbound QoS 2.

use std::time::Duration;

use aerie_e2e::raw::connect_packet;
use aerie_e2e::v5client::{V3, V5, v3_options, v5_options};
use aerie_e2e::{RawClient, Server};
use aerie_proto::{Packet, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode};
use rumqttc::v5::mqttbytes::QoS as Q5;

const QUIET: Duration = Duration::from_millis(500);

/// A rumqttc v5 subscriber on `filter` (auto-ack), SUBACK received.
async fn v5_subscriber(server: &Server, id: &str, filter: &str, qos: Q5) -> V5 {
    let (mut sub, _) = V5::connect(v5_options(server.mqtt, id)).await;
    sub.client.subscribe(filter, qos).await.unwrap();
    match sub.next_packet().await {
        rumqttc::v5::mqttbytes::v5::Packet::SubAck(_) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
    sub
}

fn publish_packet(topic: &str, payload: &[u8], qos: QoS, id: u16, dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: Some(id),
        payload: bytes::Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    })
}

// ---- client → broker ----

#[tokio::test]
async fn v5_qos1_publish_is_answered_with_puback_for_its_packet_id() {
    let server = Server::start(&[]);
    let mut sub = v5_subscriber(&server, "sub", "q/1", Q5::AtLeastOnce).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    publ.publish("q/1", b"hello", QoS::AtLeastOnce, false, Some(42))
        .await;
    match publ.recv().await {
        Some(Packet::PubAck(a)) => {
            assert_eq!(a.packet_id, 42);
            assert_eq!(a.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"hello");
    assert_eq!(p.qos, Q5::AtLeastOnce);
}

#[tokio::test]
async fn v5_qos1_publish_without_subscribers_gets_puback_no_matching_subscribers() {
    let server = Server::start(&[]);
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    let reason = publ
        .publish_acked("nobody/here", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

#[tokio::test]
async fn v5_qos2_publish_completes_with_pubrec_pubrel_pubcomp() {
    let server = Server::start(&[]);
    let mut sub = v5_subscriber(&server, "sub", "q/2", Q5::ExactlyOnce).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    publ.publish("q/2", b"once", QoS::ExactlyOnce, false, Some(7))
        .await;
    match publ.recv().await {
        Some(Packet::PubRec(r)) => {
            assert_eq!(r.packet_id, 7);
            assert_eq!(r.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publ.send_ack(Packet::PubRel, 7).await;
    match publ.recv().await {
        Some(Packet::PubComp(c)) => {
            assert_eq!(c.packet_id, 7);
            assert_eq!(c.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"once");
    assert_eq!(p.qos, Q5::ExactlyOnce);
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_pubrel_for_unknown_packet_id_gets_pubcomp_not_found() {
    let server = Server::start(&[]);
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    publ.send_ack(Packet::PubRel, 99).await;
    match publ.recv().await {
        Some(Packet::PubComp(c)) => {
            assert_eq!(c.packet_id, 99);
            assert_eq!(c.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

#[tokio::test]
async fn v311_qos1_publish_is_answered_with_puback() {
    let server = Server::start(&[]);
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "pub", true).await;
    publ.publish("q/1", b"x", QoS::AtLeastOnce, false, Some(3))
        .await;
    match publ.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, 3),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn v311_qos2_publish_completes_with_pubrec_pubrel_pubcomp() {
    let server = Server::start(&[]);
    let (mut sub, _) = V3::connect(v3_options(server.mqtt, "sub3")).await;
    sub.client
        .subscribe("q/2", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    wait_suback_v3(&mut sub).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "pub", true).await;
    publ.publish("q/2", b"once", QoS::ExactlyOnce, false, Some(9))
        .await;
    match publ.recv().await {
        Some(Packet::PubRec(r)) => assert_eq!(r.packet_id, 9),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publ.send_ack(Packet::PubRel, 9).await;
    match publ.recv().await {
        Some(Packet::PubComp(c)) => assert_eq!(c.packet_id, 9),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"once");
    assert_eq!(p.qos, rumqttc::QoS::ExactlyOnce);
    sub.expect_no_publish(QUIET).await;
}

async fn wait_suback_v3(sub: &mut V3) {
    loop {
        match tokio::time::timeout(aerie_e2e::WAIT, sub.events.recv()).await {
            Ok(Some(rumqttc::Packet::SubAck(_))) => return,
            Ok(Some(_)) => continue,
            other => panic!("no SUBACK: {other:?}"),
        }
    }
}

// ---- broker → client ----

async fn broker_to_client_flows(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect(server.mqtt, version, "sub", true).await;
    let ack = sub.subscribe(1, "d/#", QoS::ExactlyOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_2]);
    let (mut publ, _) = RawClient::connect(server.mqtt, version, "pub", true).await;

    publ.publish_acked("d/0", b"zero", QoS::AtMostOnce, false, 0)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.packet_id, p.dup), (QoS::AtMostOnce, None, false));
    assert_eq!(&p.payload[..], b"zero");

    publ.publish_acked("d/1", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.dup), (QoS::AtLeastOnce, false));
    assert_eq!(&p.payload[..], b"one");
    let id1 = p.packet_id.expect("QoS 1 has a packet id");
    assert_ne!(id1, 0);
    sub.send_ack(Packet::PubAck, id1).await;

    publ.publish_acked("d/2", b"two", QoS::ExactlyOnce, false, 2)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.dup), (QoS::ExactlyOnce, false));
    assert_eq!(&p.payload[..], b"two");
    let id2 = p.packet_id.expect("QoS 2 has a packet id");
    assert_ne!(id2, 0);
    sub.send_ack(Packet::PubRec, id2).await;
    match sub.recv().await {
        Some(Packet::PubRel(r)) => {
            assert_eq!(r.packet_id, id2);
            assert_eq!(r.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send_ack(Packet::PubComp, id2).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_broker_delivers_qos0_qos1_qos2_with_puback_and_pubrec_pubrel_pubcomp() {
    broker_to_client_flows(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_broker_delivers_qos0_qos1_qos2_with_puback_and_pubrec_pubrel_pubcomp() {
    broker_to_client_flows(ProtocolVersion::V311).await;
}

#[tokio::test]
async fn v5_delivery_is_downgraded_to_the_granted_qos() {
    let server = Server::start(&[]);
    let (mut s0, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "s0", true).await;
    assert_eq!(
        s0.subscribe(1, "g", QoS::AtMostOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_0]
    );
    let (mut s1, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "s1", true).await;
    assert_eq!(
        s1.subscribe(1, "g", QoS::AtLeastOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_1]
    );
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    publ.publish_acked("g", b"x", QoS::ExactlyOnce, false, 5)
        .await;
    let p = s0.recv_publish().await;
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));
    let p = s1.recv_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(p.packet_id.is_some());
}

#[tokio::test]
async fn v5_delivery_is_never_upgraded_above_the_published_qos() {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "s2", true).await;
    sub.subscribe(1, "g", QoS::ExactlyOnce).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    publ.publish_acked("g", b"a", QoS::AtMostOnce, false, 0)
        .await;
    publ.publish_acked("g", b"b", QoS::AtLeastOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &b"a"[..]));
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"b"[..]));
}

#[tokio::test]
async fn v311_delivery_is_downgraded_to_the_granted_qos() {
    let server = Server::start(&[]);
    let (mut sub, _) = V3::connect(v3_options(server.mqtt, "sub3")).await;
    sub.client
        .subscribe("g", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_suback_v3(&mut sub).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "pub", true).await;
    publ.publish_acked("g", b"x", QoS::ExactlyOnce, false, 5)
        .await;
    let p = sub.next_publish().await;
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
}

// ---- retransmission on resume ----

/// A persistent session subscribed to `t` at QoS 2, plus a connected publisher.
async fn persistent_subscriber(
    server: &Server,
    version: ProtocolVersion,
) -> (RawClient, RawClient) {
    let (mut sub, _) = match version {
        ProtocolVersion::V5 => RawClient::connect_v5(server.mqtt, "persist", true, 60).await,
        ProtocolVersion::V311 => RawClient::connect(server.mqtt, version, "persist", false).await,
    };
    sub.subscribe(1, "t", QoS::ExactlyOnce).await;
    let (publ, _) = RawClient::connect(server.mqtt, version, "pub", true).await;
    (sub, publ)
}

async fn resume(server: &Server, version: ProtocolVersion) -> RawClient {
    let (c, ack) = match version {
        ProtocolVersion::V5 => RawClient::connect_v5(server.mqtt, "persist", false, 60).await,
        ProtocolVersion::V311 => RawClient::connect(server.mqtt, version, "persist", false).await,
    };
    assert!(ack.session_present, "session present after resume");
    c
}

async fn unacked_publish_is_resent(version: ProtocolVersion, qos: QoS) {
    let server = Server::start(&[]);
    let (mut sub, mut publ) = persistent_subscriber(&server, version).await;
    publ.publish_acked("t", b"first", qos, false, 1).await;
    let p = sub.recv_publish().await;
    assert!(!p.dup);
    let id = p.packet_id.unwrap();
    drop(sub); // no ack, no DISCONNECT

    let mut sub = resume(&server, version).await;
    let p = sub.recv_publish().await;
    assert!(p.dup, "a resent PUBLISH has DUP=1");
    assert_eq!(p.packet_id, Some(id), "same packet id");
    assert_eq!(p.qos, qos);
    assert_eq!(&p.payload[..], b"first");
    sub.ack(&p).await;
    if qos == QoS::ExactlyOnce {
        match sub.recv().await {
            Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        sub.send_ack(Packet::PubComp, id).await;
    }
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_unacked_qos1_message_is_resent_with_dup_and_same_packet_id_after_reconnect() {
    unacked_publish_is_resent(ProtocolVersion::V5, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn v5_unacked_qos2_message_is_resent_with_dup_and_same_packet_id_after_reconnect() {
    unacked_publish_is_resent(ProtocolVersion::V5, QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn v311_unacked_qos1_message_is_resent_with_dup_and_same_packet_id_after_reconnect() {
    unacked_publish_is_resent(ProtocolVersion::V311, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn v311_unacked_qos2_message_is_resent_with_dup_and_same_packet_id_after_reconnect() {
    unacked_publish_is_resent(ProtocolVersion::V311, QoS::ExactlyOnce).await;
}

async fn pubrel_is_resent(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let (mut sub, mut publ) = persistent_subscriber(&server, version).await;
    publ.publish_acked("t", b"two", QoS::ExactlyOnce, false, 1)
        .await;
    let p = sub.recv_publish().await;
    let id = p.packet_id.unwrap();
    sub.send_ack(Packet::PubRec, id).await;
    match sub.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub); // no PUBCOMP

    let mut sub = resume(&server, version).await;
    match sub.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id),
        other => panic!("expected the PUBREL again (not the PUBLISH), got {other:?}"),
    }
    sub.send_ack(Packet::PubComp, id).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_pubrel_is_resent_after_reconnect_when_pubcomp_was_missing() {
    pubrel_is_resent(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_pubrel_is_resent_after_reconnect_when_pubcomp_was_missing() {
    pubrel_is_resent(ProtocolVersion::V311).await;
}

async fn acked_messages_are_not_resent(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let (mut sub, mut publ) = persistent_subscriber(&server, version).await;
    publ.publish_acked("t", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish_acked("t", b"two", QoS::ExactlyOnce, false, 2)
        .await;
    let p1 = sub.recv_publish().await;
    sub.ack(&p1).await;
    let p2 = sub.recv_publish().await;
    sub.ack(&p2).await;
    let id2 = p2.packet_id.unwrap();
    match sub.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id2),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send_ack(Packet::PubComp, id2).await;
    // A round trip so the broker has handled the PUBCOMP before we leave.
    sub.send(Packet::PingReq).await;
    assert_eq!(sub.recv().await, Some(Packet::PingResp));
    drop(sub);

    let mut sub = resume(&server, version).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_acknowledged_messages_are_not_resent_after_reconnect() {
    acked_messages_are_not_resent(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_acknowledged_messages_are_not_resent_after_reconnect() {
    acked_messages_are_not_resent(ProtocolVersion::V311).await;
}

// ---- exactly once for inbound QoS 2 ----

async fn inbound_qos2_duplicate_is_delivered_once(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect(server.mqtt, version, "sub", true).await;
    sub.subscribe(1, "x", QoS::AtMostOnce).await;
    let (mut publ, _) = RawClient::connect(server.mqtt, version, "pub", true).await;
    publ.send(publish_packet("x", b"m", QoS::ExactlyOnce, 5, false))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 5));
    // The PUBREC "got lost": the publisher retransmits with DUP.
    publ.send(publish_packet("x", b"m", QoS::ExactlyOnce, 5, true))
        .await;
    match publ.recv().await {
        Some(Packet::PubRec(r)) => {
            assert_eq!(r.packet_id, 5);
            assert!(!r.reason.is_error(), "{r:?}");
        }
        other => panic!("expected PUBREC again, got {other:?}"),
    }
    publ.send_ack(Packet::PubRel, 5).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubComp(c)) if c.packet_id == 5));

    assert_eq!(&sub.recv_publish().await.payload[..], b"m");
    sub.expect_silence(QUIET).await;

    // After PUBCOMP the id is free: the same id is a new message.
    publ.publish_acked("x", b"n", QoS::ExactlyOnce, false, 5)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"n");
}

#[tokio::test]
async fn v5_inbound_qos2_retransmitted_before_pubrel_is_delivered_once() {
    inbound_qos2_duplicate_is_delivered_once(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_inbound_qos2_retransmitted_before_pubrel_is_delivered_once() {
    inbound_qos2_duplicate_is_delivered_once(ProtocolVersion::V311).await;
}

async fn inbound_qos2_resent_after_reconnect_is_delivered_once(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect(server.mqtt, version, "sub", true).await;
    sub.subscribe(1, "x", QoS::AtMostOnce).await;
    let mut connect = connect_packet(version, "pub", version == ProtocolVersion::V5);
    connect.properties.session_expiry_interval = version.is_v5().then_some(60);
    let (mut publ, _) = RawClient::connect_with(server.mqtt, connect.clone()).await;
    publ.send(publish_packet("x", b"m", QoS::ExactlyOnce, 8, false))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 8));
    drop(publ); // gone before PUBREL

    connect.clean_start = false;
    let (mut publ, ack) = RawClient::connect_with(server.mqtt, connect).await;
    assert!(ack.session_present);
    publ.send(publish_packet("x", b"m", QoS::ExactlyOnce, 8, true))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 8));
    publ.send_ack(Packet::PubRel, 8).await;
    match publ.recv().await {
        Some(Packet::PubComp(c)) => {
            assert_eq!(c.packet_id, 8);
            assert_eq!(c.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(&sub.recv_publish().await.payload[..], b"m");
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_inbound_qos2_resent_after_reconnect_before_pubrel_is_delivered_once() {
    inbound_qos2_resent_after_reconnect_is_delivered_once(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_inbound_qos2_resent_after_reconnect_before_pubrel_is_delivered_once() {
    inbound_qos2_resent_after_reconnect_is_delivered_once(ProtocolVersion::V311).await;
}
