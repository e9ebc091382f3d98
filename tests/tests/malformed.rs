//! Malformed and hostile input, byte by byte: the offending connection is
//! closed with the right reason (DISCONNECT on v5 after CONNECT, CONNACK
//! before), and a client connected beside it keeps being served.
//!
//! Not covered: no CONNECT within the connect timeout (10 s, too slow here).

use std::time::Duration;

use aerie_e2e::raw::{connect_packet, frame, publish_packet};
use aerie_e2e::{RawClient, Server};
use aerie_proto::*;
use bytes::BytesMut;

/// A bystander subscribed to `alive/#` before the hostile client shows up.
async fn bystander(server: &Server) -> RawClient {
    let (mut c, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "bystander", true).await;
    c.subscribe(1, "alive/#", QoS::AtLeastOnce).await;
    c
}

/// Publish/subscribe still works for the bystander after the hostile client left.
async fn assert_still_served(server: &Server, bystander: &mut RawClient) {
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "after", true).await;
    publ.publish(
        "alive/check",
        b"still here",
        QoS::AtLeastOnce,
        false,
        Some(1),
    )
    .await;
    match publ.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let p = bystander.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.payload[..]),
        ("alive/check", &b"still here"[..])
    );
    bystander.ack(&p).await;
}

async fn hostile(server: &Server) -> RawClient {
    RawClient::connect(server.mqtt, ProtocolVersion::V5, "hostile", true)
        .await
        .0
}

/// Sends `bytes` from a connected v5 client and checks it is disconnected
/// with `reason` while the bystander keeps being served.
async fn expect_disconnect_for(bytes: &[u8], reason: ReasonCode) {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let mut c = hostile(&server).await;
    c.send_bytes(bytes).await;
    assert_eq!(c.expect_closed().await, Some(reason));
    assert_still_served(&server, &mut by).await;
}

fn encoded(packet: Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).expect("encode");
    out.to_vec()
}

/// A v5 CONNECT's bytes; the protocol name is at 4..8, the level at 8, the
/// flags at 9 (the packet is small enough for a one-byte remaining length).
fn v5_connect_bytes() -> Vec<u8> {
    let b = encoded(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        ProtocolVersion::V5,
    );
    assert_eq!(&b[4..9], b"MQTT\x05");
    b
}

/// Sends a CONNECT's bytes on a fresh connection and returns the CONNACK,
/// decoded as `answer_version`, after checking the connection then closes.
async fn connack_for(server: &Server, bytes: &[u8], answer_version: ProtocolVersion) -> ConnAck {
    let mut c = RawClient::open(server.mqtt, answer_version).await;
    c.send_bytes(bytes).await;
    let ack = match c.recv().await {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    assert_eq!(c.expect_closed().await, None);
    ack
}

// ---- after CONNECT (v5: DISCONNECT with the reason) ----------------------

#[tokio::test]
async fn bad_remaining_length_closes_with_0x81() {
    // Five length bytes, each with the continuation bit: at most four are allowed.
    expect_disconnect_for(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn oversized_packet_is_refused_from_its_fixed_header_alone() {
    // A PUBLISH announcing 10 MB; the body is never sent.
    let mut header = vec![0x30];
    let mut len = 10 * 1024 * 1024usize;
    while len > 0 {
        let b = (len % 128) as u8;
        len /= 128;
        header.push(if len > 0 { b | 0x80 } else { b });
    }
    expect_disconnect_for(&header, ReasonCode::PACKET_TOO_LARGE).await;
}

#[tokio::test]
async fn reserved_fixed_header_flags_close_with_0x81() {
    // PINGREQ with a reserved flag bit set.
    expect_disconnect_for(&[0xC1, 0x00], ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn subscribe_without_its_required_flags_closes_with_0x81() {
    // SUBSCRIBE must carry flags 0b0010.
    let body = [0, 1, 0, 0, 3, b'a', b'/', b'b', 0];
    expect_disconnect_for(&frame(0x80, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn invalid_utf8_in_topic_closes_with_0x81() {
    let body = [0, 2, 0xC3, 0x28, 0, b'x'];
    expect_disconnect_for(&frame(0x30, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn null_character_in_topic_closes_with_0x81() {
    let body = [0, 3, b'a', 0, b'b', 0, b'x'];
    expect_disconnect_for(&frame(0x30, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn wildcard_in_publish_topic_closes_with_0x90() {
    let p = publish_packet("a/+/c", b"x", QoS::AtMostOnce, None);
    expect_disconnect_for(
        &encoded(Packet::Publish(p), ProtocolVersion::V5),
        ReasonCode::TOPIC_NAME_INVALID,
    )
    .await;
}

#[tokio::test]
async fn publish_with_packet_id_zero_closes_with_0x82() {
    let p = publish_packet("a/b", b"x", QoS::AtLeastOnce, Some(0));
    expect_disconnect_for(
        &encoded(Packet::Publish(p), ProtocolVersion::V5),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn duplicate_property_closes_with_0x82() {
    // Content Type (0x03) twice.
    let body = [
        0, 3, b'd', b'/', b't', 8, 0x03, 0, 1, b'a', 0x03, 0, 1, b'b', b'x',
    ];
    expect_disconnect_for(&frame(0x30, &body), ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn property_not_allowed_in_packet_closes_with_0x81() {
    // Session Expiry Interval (0x11) belongs in CONNECT/CONNACK/DISCONNECT, not PUBLISH.
    let body = [0, 3, b'd', b'/', b't', 5, 0x11, 0, 0, 0, 5, b'x'];
    expect_disconnect_for(&frame(0x30, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn second_connect_closes_with_0x82() {
    let connect = encoded(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "again", true))),
        ProtocolVersion::V5,
    );
    expect_disconnect_for(&connect, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn v311_malformed_packet_closes_connection_without_disconnect() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let (mut c, _) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "hostile3", true).await;
    c.send_bytes(&[0xC1, 0x00]).await;
    // 3.1.1 has no DISCONNECT from the server: the connection just closes.
    assert_eq!(c.expect_closed().await, None);
    assert_still_served(&server, &mut by).await;
}

// ---- before CONNECT completes --------------------------------------------

#[tokio::test]
async fn first_packet_not_connect_closes_connection() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let mut c = RawClient::open(server.mqtt, ProtocolVersion::V5).await;
    c.send_bytes(&[0xC0, 0x00]).await; // PINGREQ
    assert_eq!(c.recv().await, None, "closed without an answer");
    assert_still_served(&server, &mut by).await;
}

#[tokio::test]
async fn connect_with_reserved_flag_gets_connack_0x81() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let mut b = v5_connect_bytes();
    b[9] |= 0x01;
    let ack = connack_for(&server, &b, ProtocolVersion::V5).await;
    assert_eq!(ack.reason, ReasonCode::MALFORMED_PACKET);
    assert_still_served(&server, &mut by).await;
}

#[tokio::test]
async fn level5_connect_with_unknown_protocol_name_gets_connack_0x84() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let mut b = v5_connect_bytes();
    b[7] = b'X'; // "MQTX"
    let ack = connack_for(&server, &b, ProtocolVersion::V5).await;
    assert_eq!(ack.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert_still_served(&server, &mut by).await;
}

#[tokio::test]
async fn mqtt31_level3_connect_gets_return_code_1() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    // MQTT 3.1: protocol name "MQIsdp", level 3, clean session, keep alive 60, id "c".
    let body = [
        0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'c',
    ];
    let ack = connack_for(&server, &frame(0x10, &body), ProtocolVersion::V311).await;
    assert_eq!(ack.reason.to_v3_connack(), 1);
    assert_still_served(&server, &mut by).await;
}

#[tokio::test]
async fn level6_connect_gets_return_code_1() {
    let server = Server::start(&[]);
    let mut by = bystander(&server).await;
    let mut b = v5_connect_bytes();
    b[8] = 6;
    let ack = connack_for(&server, &b, ProtocolVersion::V311).await;
    assert_eq!(ack.reason.to_v3_connack(), 1);
    assert_still_served(&server, &mut by).await;
}

// ---- refused without closing ---------------------------------------------

#[tokio::test]
async fn invalid_subscription_filter_gets_v5_suback_0x8f() {
    let server = Server::start(&[]);
    let mut c = hostile(&server).await;
    let ack = c.subscribe(1, "a/#/b", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::TOPIC_FILTER_INVALID]);
    // The connection stays usable.
    let ack = c.subscribe(2, "a/b", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
}

#[tokio::test]
async fn invalid_subscription_filter_gets_v311_suback_0x80() {
    let server = Server::start(&[]);
    let (mut c, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V311, "bad-filter3", true).await;
    let ack = c.subscribe(1, "a/#/b", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode(0x80)]);
    let ack = c.subscribe(2, "a/b", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
}

#[tokio::test]
async fn publish_to_sys_topic_is_refused() {
    let server = Server::start(&[]);
    let (mut watcher, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "sys-watch", true).await;
    watcher.subscribe(1, "$SYS/#", QoS::AtLeastOnce).await;
    let mut c = hostile(&server).await;
    c.publish("$SYS/x", b"fake", QoS::AtLeastOnce, false, Some(7))
        .await;
    match c.recv().await {
        Some(Packet::PubAck(a)) => {
            assert_eq!((a.packet_id, a.reason), (7, ReasonCode::TOPIC_NAME_INVALID))
        }
        other => panic!("expected PUBACK 0x90, got {other:?}"),
    }
    // The broker's own `$SYS` figures may arrive; the fake one never does.
    while let Ok(Some(p)) = watcher.recv_within(Duration::from_millis(300)).await {
        if let Packet::Publish(p) = p {
            assert_ne!(&p.topic[..], "$SYS/x", "a client's $SYS publish was routed");
        }
    }
}

#[tokio::test]
async fn v311_publish_to_a_dollar_topic_is_acknowledged_dropped_and_counted() {
    let server = Server::start(&[]);
    let (mut watcher, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "dollar-watch", true).await;
    watcher.subscribe(1, "$SYS/#", QoS::AtLeastOnce).await;
    watcher.subscribe(2, "$x/#", QoS::AtLeastOnce).await;
    let (mut c, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V311, "dollar-311", true).await;
    // 3.1.1 has no reason code for it: each QoS's usual answer, as for an
    // ACL denial, and the connection stays up (PINGRESP for QoS 0).
    for (qos, id) in [
        (QoS::AtMostOnce, 0),
        (QoS::AtLeastOnce, 7),
        (QoS::ExactlyOnce, 8),
    ] {
        assert_eq!(
            c.publish_acked("$SYS/x", b"fake", qos, false, id).await,
            ReasonCode::SUCCESS,
            "{qos:?}"
        );
    }
    assert_eq!(
        c.publish_acked("$x/y", b"fake", QoS::AtLeastOnce, true, 9)
            .await,
        ReasonCode::SUCCESS
    );
    // Still connected and served: an ordinary topic goes through.
    c.subscribe(3, "ok", QoS::AtMostOnce).await;
    c.publish("ok", b"fine", QoS::AtMostOnce, false, None).await;
    assert_eq!(&c.recv_publish().await.payload[..], b"fine");
    // Nothing was routed (nor retained: a new subscriber gets nothing).
    while let Ok(Some(p)) = watcher.recv_within(Duration::from_millis(300)).await {
        if let Packet::Publish(p) = p {
            assert!(
                !matches!(&p.topic[..], "$SYS/x" | "$x/y"),
                "a client's $-topic publish was routed"
            );
        }
    }
    let (mut late, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "dollar-late", true).await;
    late.subscribe(1, "$x/#", QoS::AtLeastOnce).await;
    late.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(
        server.wait_metric(
            "aerie_acl_denied_total",
            "action=\"publish_dollar_topic\"",
            4.0
        ),
        4.0
    );
}

// ---- closing on a client in the middle of a burst ------------------------

/// Keeps writing small packets for about 150 ms, as a client mid-burst
/// does, and asserts every write succeeds: the broker reads and discards
/// what follows its close instead of resetting the connection. Called once
/// the broker's answer is in, so the broker has certainly decided to close.
async fn keep_bursting(c: &mut RawClient) {
    let ping = encoded(Packet::PingReq, c.version);
    for i in 0..15 {
        if let Err(e) = c.write_bytes(&ping.repeat(64)).await {
            panic!("write {i} of the burst failed: {e}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_closed_mid_burst_still_reads_the_disconnect() {
    let server = Server::start(&["--max-packet-size", "1024"]);
    let mut by = bystander(&server).await;
    let mut c = hostile(&server).await;
    // A whole PUBLISH over the maximum packet size, then the rest of the burst.
    let big = publish_packet("t", &[7; 2048], QoS::AtMostOnce, None);
    c.write_bytes(&encoded(Packet::Publish(big), ProtocolVersion::V5))
        .await
        .expect("write");
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    keep_bursting(&mut c).await;
    let rest = c.recv_until_closed_cleanly().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_still_served(&server, &mut by).await;
}

#[tokio::test]
async fn a_client_refused_mid_burst_still_reads_its_connack() {
    let server = Server::start(&[]);
    // Level 6 is refused with 3.1.1's return code 1; the client sends on.
    let mut connect = encoded(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", true))),
        ProtocolVersion::V311,
    );
    assert_eq!(&connect[4..9], b"MQTT\x04");
    connect[8] = 6;
    let mut c = RawClient::open(server.mqtt, ProtocolVersion::V311).await;
    c.write_bytes(&connect).await.expect("write");
    match c.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.reason.to_v3_connack(), 1),
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    keep_bursting(&mut c).await;
    let rest = c.recv_until_closed_cleanly().await;
    assert!(rest.is_empty(), "{rest:?}");
}

/// Bounded: a client that keeps sending after its close cannot keep its
/// connection (and its slot) past the drain's second.
#[tokio::test]
async fn a_closed_client_that_sends_forever_is_cut_off() {
    let server = Server::start(&["--max-packet-size", "1024"]);
    let mut c = hostile(&server).await;
    let big = publish_packet("t", &[7; 2048], QoS::AtMostOnce, None);
    c.write_bytes(&encoded(Packet::Publish(big), ProtocolVersion::V5))
        .await
        .expect("write");
    let start = std::time::Instant::now();
    // Slow enough that the time bound, not the byte bound, ends it.
    let chunk = vec![0u8; 1024];
    let cut = loop {
        if c.write_bytes(&chunk).await.is_err() {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(cut < Duration::from_secs(3), "cut off after {cut:?}");
}
