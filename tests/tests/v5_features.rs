//! MQTT 5 features end to end: message expiry, topic aliases, receive
//! maximum, maximum packet size, subscription identifiers, no-local, property
//! pass-through, assigned client identifiers, overlapping subscriptions.

use std::time::Duration;

use aerie_e2e::raw::{connect_packet, publish_packet};
use aerie_e2e::v5client::{V5, v5_options};
use aerie_e2e::{RawClient, Server};
use aerie_proto::*;
use bytes::Bytes;

const QUIET: Duration = Duration::from_millis(400);

async fn v5(server: &Server, id: &str) -> RawClient {
    RawClient::connect(server.mqtt, ProtocolVersion::V5, id, true)
        .await
        .0
}

/// A v5 session that outlives its connection (expiry 60 s).
async fn persistent(server: &Server, id: &str, clean: bool) -> (RawClient, ConnAck) {
    RawClient::connect_v5_with_props(
        server.mqtt,
        id,
        clean,
        ConnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        },
    )
    .await
}

/// Publishes at QoS 1 and waits for the PUBACK.
async fn publish_acked(c: &mut RawClient, p: Publish) -> PubResp {
    c.send(Packet::Publish(p)).await;
    match c.recv().await {
        Some(Packet::PubAck(a)) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn with_expiry(topic: &str, payload: &[u8], id: u16, secs: u32) -> Publish {
    let mut p = publish_packet(topic, payload, QoS::AtLeastOnce, Some(id));
    p.properties.message_expiry_interval = Some(secs);
    p
}

// ---- 1. Message expiry -------------------------------------------------

#[tokio::test]
async fn message_expired_while_queued_offline_is_not_delivered_and_is_counted() {
    let server = Server::start(&[]);
    let (mut sub, _) = persistent(&server, "exp-sub", true).await;
    assert_eq!(
        sub.subscribe(1, "exp/t", QoS::AtLeastOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_1]
    );
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut publ = v5(&server, "exp-pub").await;
    publish_acked(&mut publ, with_expiry("exp/t", b"short-lived", 1, 1)).await;
    publish_acked(
        &mut publ,
        publish_packet("exp/t", b"durable", QoS::AtLeastOnce, Some(2)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let (mut sub, ack) = persistent(&server, "exp-sub", false).await;
    assert!(ack.session_present);
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"durable");
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
    assert_eq!(
        server.metric("aerie_messages_dropped_total", "reason=\"expired\""),
        1.0
    );
}

#[tokio::test]
async fn delivered_message_carries_remaining_expiry_interval() {
    let server = Server::start(&[]);
    let (mut sub, _) = persistent(&server, "rem-sub", true).await;
    sub.subscribe(1, "rem/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut publ = v5(&server, "rem-pub").await;
    publish_acked(&mut publ, with_expiry("rem/t", b"x", 1, 10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut sub, _) = persistent(&server, "rem-sub", false).await;
    let p = sub.recv_publish().await;
    let left = p
        .properties
        .message_expiry_interval
        .expect("expiry interval forwarded");
    assert!((7..=8).contains(&left), "remaining interval {left}");
}

#[tokio::test]
async fn retained_message_expires() {
    let server = Server::start(&[]);
    let mut publ = v5(&server, "ret-pub").await;
    let mut p = with_expiry("ret/t", b"soon gone", 1, 1);
    p.retain = true;
    publish_acked(&mut publ, p).await;

    // Within its interval a new subscriber gets it, with what is left.
    let mut early = v5(&server, "ret-early").await;
    early.subscribe(1, "ret/#", QoS::AtLeastOnce).await;
    let p = early.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"soon gone");
    assert!(p.properties.message_expiry_interval.unwrap() <= 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut late = v5(&server, "ret-late").await;
    late.subscribe(1, "ret/#", QoS::AtLeastOnce).await;
    late.expect_silence(QUIET).await;
}

// ---- 2. Topic aliases --------------------------------------------------

fn aliased(topic: &str, payload: &[u8], alias: u16) -> Publish {
    let mut p = publish_packet(topic, payload, QoS::AtMostOnce, None);
    p.properties.topic_alias = Some(alias);
    p
}

#[tokio::test]
async fn client_topic_alias_reaches_subscribers_as_full_topic() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "al-sub").await;
    sub.subscribe(1, "al/#", QoS::AtMostOnce).await;
    let mut publ = v5(&server, "al-pub").await;
    publ.send(Packet::Publish(aliased("al/long/topic", b"one", 3)))
        .await;
    publ.send(Packet::Publish(aliased("", b"two", 3))).await;
    for payload in [&b"one"[..], b"two"] {
        let p = sub.recv_publish().await;
        assert_eq!(&*p.topic, "al/long/topic");
        assert_eq!(&p.payload[..], payload);
        assert_eq!(p.properties.topic_alias, None);
    }
}

#[tokio::test]
async fn topic_alias_zero_closes_with_0x94() {
    let server = Server::start(&[]);
    let mut c = v5(&server, "al0").await;
    c.send(Packet::Publish(aliased("al/t", b"x", 0))).await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

#[tokio::test]
async fn topic_alias_above_connack_maximum_closes_with_0x94() {
    let server = Server::start(&[]);
    let (mut c, ack) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "albig", true).await;
    let max = ack
        .properties
        .topic_alias_maximum
        .expect("CONNACK announces topic alias maximum");
    assert!(max > 0 && max < u16::MAX);
    // The maximum itself is fine...
    c.send(Packet::Publish(aliased("al/t", b"x", max))).await;
    c.expect_silence(Duration::from_millis(200)).await;
    // ...one more is not.
    c.send(Packet::Publish(aliased("al/t", b"x", max + 1)))
        .await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

#[tokio::test]
async fn empty_topic_with_unknown_alias_closes_with_0x82() {
    let server = Server::start(&[]);
    let mut c = v5(&server, "alunk").await;
    c.send(Packet::Publish(aliased("", b"x", 2))).await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
}

async fn alias_subscriber(server: &Server, id: &str, maximum: u16) -> RawClient {
    let (mut sub, _) = RawClient::connect_v5_with_props(
        server.mqtt,
        id,
        true,
        ConnectProperties {
            topic_alias_maximum: Some(maximum),
            ..Default::default()
        },
    )
    .await;
    sub.subscribe(1, "ba/#", QoS::AtMostOnce).await;
    sub
}

#[tokio::test]
async fn broker_uses_topic_alias_when_client_allows_it() {
    let server = Server::start(&[]);
    let mut sub = alias_subscriber(&server, "ba-sub", 5).await;
    let mut publ = v5(&server, "ba-pub").await;
    for payload in [&b"1"[..], b"2"] {
        publ.publish("ba/some/topic", payload, QoS::AtMostOnce, false, None)
            .await;
    }
    let first = sub.recv_publish().await;
    assert_eq!(&*first.topic, "ba/some/topic");
    let alias = first.properties.topic_alias.expect("alias assigned");
    assert!((1..=5).contains(&alias));
    let second = sub.recv_publish().await;
    assert_eq!(&*second.topic, "", "second delivery uses the alias alone");
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(&second.payload[..], b"2");
}

#[tokio::test]
async fn broker_sends_no_topic_alias_when_client_maximum_is_zero() {
    let server = Server::start(&[]);
    let mut sub = alias_subscriber(&server, "ba0-sub", 0).await;
    let mut publ = v5(&server, "ba0-pub").await;
    for _ in 0..3 {
        publ.publish("ba/t", b"x", QoS::AtMostOnce, false, None)
            .await;
    }
    for _ in 0..3 {
        let p = sub.recv_publish().await;
        assert_eq!(&*p.topic, "ba/t");
        assert_eq!(p.properties.topic_alias, None);
    }
}

// ---- 3. Receive maximum ------------------------------------------------

#[tokio::test]
async fn client_receive_maximum_limits_unacknowledged_deliveries() {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect_v5_with_props(
        server.mqtt,
        "rm-sub",
        true,
        ConnectProperties {
            receive_maximum: Some(2),
            ..Default::default()
        },
    )
    .await;
    sub.subscribe(1, "rm/t", QoS::AtLeastOnce).await;
    let mut publ = v5(&server, "rm-pub").await;
    for i in 0..5u16 {
        let p = publish_packet(
            "rm/t",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            Some(i + 1),
        );
        publish_acked(&mut publ, p).await;
    }
    let a = sub.recv_publish().await;
    let b = sub.recv_publish().await;
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"m0"[..], &b"m1"[..]));
    sub.expect_silence(QUIET).await;

    sub.ack(&a).await;
    let c = sub.recv_publish().await;
    assert_eq!(&c.payload[..], b"m2");
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn exceeding_announced_receive_maximum_with_qos2_closes_with_0x93() {
    let server = Server::start(&["--receive-maximum", "2"]);
    let (mut c, ack) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "rm-in", true).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for id in 1..=3u16 {
        c.send(Packet::Publish(publish_packet(
            "rm/in",
            b"x",
            QoS::ExactlyOnce,
            Some(id),
        )))
        .await;
    }
    for id in 1..=2u16 {
        match c.recv().await {
            Some(Packet::PubRec(r)) => assert_eq!(r.packet_id, id),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
}

// ---- 4. Maximum packet size --------------------------------------------

#[tokio::test]
async fn oversized_publish_closes_with_0x95_and_others_keep_working() {
    let server = Server::start(&["--max-packet-size", "1024"]);
    let mut watcher = v5(&server, "mp-watch").await;
    watcher.subscribe(1, "mp/#", QoS::AtMostOnce).await;

    let (mut big, ack) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "mp-big", true).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    big.publish("mp/big", &[7u8; 2000], QoS::AtMostOnce, false, None)
        .await;
    assert_eq!(
        big.expect_closed().await,
        Some(ReasonCode::PACKET_TOO_LARGE)
    );
    watcher.expect_silence(Duration::from_millis(200)).await;

    let mut other = v5(&server, "mp-other").await;
    other
        .publish("mp/small", b"fine", QoS::AtMostOnce, false, None)
        .await;
    let p = watcher.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("mp/small", &b"fine"[..]));
}

#[tokio::test]
async fn client_maximum_packet_size_skips_larger_messages_and_counts_them() {
    let server = Server::start(&[]);
    let (mut sub, _) = RawClient::connect_v5_with_props(
        server.mqtt,
        "mps-sub",
        true,
        ConnectProperties {
            maximum_packet_size: Some(100),
            ..Default::default()
        },
    )
    .await;
    sub.subscribe(1, "mps/t", QoS::AtLeastOnce).await;
    let mut publ = v5(&server, "mps-pub").await;
    publish_acked(
        &mut publ,
        publish_packet("mps/t", &[1u8; 500], QoS::AtLeastOnce, Some(1)),
    )
    .await;
    publish_acked(
        &mut publ,
        publish_packet("mps/t", b"small", QoS::AtLeastOnce, Some(2)),
    )
    .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"small");
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
    assert_eq!(
        server.metric(
            "aerie_messages_dropped_total",
            "reason=\"too_large_for_client\""
        ),
        1.0
    );
}

// ---- 5. Subscription identifiers ---------------------------------------

async fn subscribe_id(c: &mut RawClient, pid: u16, filter: &str, qos: QoS, id: u32) {
    let ack = c
        .subscribe_with(
            pid,
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
            Some(id),
        )
        .await;
    assert_eq!(ack.reasons, [ReasonCode(qos as u8)]);
}

#[tokio::test]
async fn delivery_carries_subscription_identifier_of_matching_subscription() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "sid-sub").await;
    subscribe_id(&mut sub, 1, "sid/a", QoS::AtMostOnce, 11).await;
    subscribe_id(&mut sub, 2, "sid/b", QoS::AtMostOnce, 22).await;
    let mut publ = v5(&server, "sid-pub").await;
    publ.publish("sid/b", b"x", QoS::AtMostOnce, false, None)
        .await;
    publ.publish("sid/a", b"y", QoS::AtMostOnce, false, None)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.properties.subscription_identifiers[..]),
        ("sid/b", &[22][..])
    );
    let p = sub.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.properties.subscription_identifiers[..]),
        ("sid/a", &[11][..])
    );
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_both_identifiers_at_max_qos() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "ov-sub").await;
    subscribe_id(&mut sub, 1, "ov/+", QoS::AtMostOnce, 1).await;
    subscribe_id(&mut sub, 2, "ov/#", QoS::AtLeastOnce, 2).await;
    let mut publ = v5(&server, "ov-pub").await;
    publish_acked(
        &mut publ,
        publish_packet("ov/x", b"x", QoS::AtLeastOnce, Some(1)),
    )
    .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn subscription_identifier_in_client_publish_closes_with_0x82() {
    let server = Server::start(&[]);
    let mut c = v5(&server, "sid-bad").await;
    let mut p = publish_packet("sid/x", b"x", QoS::AtMostOnce, None);
    p.properties.subscription_identifiers = vec![5];
    c.send(Packet::Publish(p)).await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
}

// ---- 6. No local -------------------------------------------------------

#[tokio::test]
async fn no_local_subscriber_gets_others_publishes_but_not_its_own() {
    let server = Server::start(&[]);
    let mut me = v5(&server, "nl-me").await;
    me.subscribe_with(
        1,
        "nl/t",
        SubscriptionOptions {
            no_local: true,
            ..Default::default()
        },
        None,
    )
    .await;
    me.publish("nl/t", b"mine", QoS::AtMostOnce, false, None)
        .await;
    let mut other = v5(&server, "nl-other").await;
    other
        .publish("nl/t", b"theirs", QoS::AtMostOnce, false, None)
        .await;
    let p = me.recv_publish().await;
    assert_eq!(&p.payload[..], b"theirs");
    me.expect_silence(QUIET).await;
}

#[tokio::test]
async fn no_local_on_shared_subscription_closes_with_0x82() {
    let server = Server::start(&[]);
    let mut c = v5(&server, "nl-shared").await;
    c.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            "$share/g/nl/t".into(),
            SubscriptionOptions {
                no_local: true,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties::default(),
    }))
    .await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
}

// ---- 8. Property pass-through ------------------------------------------

fn rich_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 255])),
        user_properties: vec![
            ("k".into(), "1".into()),
            ("a".into(), "x".into()),
            ("k".into(), "2".into()),
            ("k".into(), "1".into()),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn publish_properties_reach_v5_subscriber_unchanged() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "pt-sub").await;
    sub.subscribe(1, "pt/t", QoS::AtLeastOnce).await;

    // Published by a real client library.
    let (publ, _) = V5::connect(v5_options(server.mqtt, "pt-pub")).await;
    let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 255])),
        user_properties: vec![
            ("k".into(), "1".into()),
            ("a".into(), "x".into()),
            ("k".into(), "2".into()),
            ("k".into(), "1".into()),
        ],
        ..Default::default()
    };
    publ.client
        .publish_with_properties(
            "pt/t",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "{\"v\":1}",
            props,
        )
        .await
        .unwrap();
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"{\"v\":1}");
    assert_eq!(p.properties, rich_properties());
}

#[tokio::test]
async fn v311_subscriber_gets_v5_message_without_properties() {
    let server = Server::start(&[]);
    let (mut sub, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V311, "pt3-sub", true).await;
    sub.subscribe(1, "pt/t", QoS::AtLeastOnce).await;
    let mut publ = v5(&server, "pt3-pub").await;
    let mut p = publish_packet("pt/t", b"{\"v\":1}", QoS::AtLeastOnce, Some(1));
    p.properties = rich_properties();
    publish_acked(&mut publ, p).await;
    let p = sub.recv_publish().await;
    // A 3.1.1 PUBLISH has no properties: any leak would corrupt topic or payload.
    assert_eq!(&*p.topic, "pt/t");
    assert_eq!(&p.payload[..], b"{\"v\":1}");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn invalid_utf8_payload_marked_utf8_gets_puback_0x99() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "pfi-sub").await;
    sub.subscribe(1, "pfi/t", QoS::AtLeastOnce).await;
    let mut publ = v5(&server, "pfi-pub").await;
    let mut p = publish_packet("pfi/t", &[0xFF, 0xFE, b'a'], QoS::AtLeastOnce, Some(9));
    p.properties.payload_format_indicator = Some(1);
    let ack = publish_acked(&mut publ, p).await;
    assert_eq!(
        (ack.packet_id, ack.reason),
        (9, ReasonCode::PAYLOAD_FORMAT_INVALID)
    );
    sub.expect_silence(QUIET).await;
}

// ---- 9. Assigned client identifiers ------------------------------------

#[tokio::test]
async fn v5_empty_client_id_gets_assigned_identifier_and_works() {
    let server = Server::start(&[]);
    let (mut c, ack) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "", true).await;
    let assigned = ack
        .properties
        .assigned_client_identifier
        .expect("assigned client identifier");
    assert!(!assigned.is_empty());
    c.subscribe(1, "as/t", QoS::AtMostOnce).await;
    c.publish("as/t", b"self", QoS::AtMostOnce, false, None)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"self");
}

#[tokio::test]
async fn v311_empty_client_id_with_clean_session_is_accepted() {
    let server = Server::start(&[]);
    let (mut c, ack) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "", true).await;
    assert!(!ack.session_present);
    c.subscribe(1, "as3/t", QoS::AtMostOnce).await;
    c.publish("as3/t", b"self", QoS::AtMostOnce, false, None)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"self");
}

#[tokio::test]
async fn v311_empty_client_id_without_clean_session_is_rejected_with_code_2() {
    let server = Server::start(&[]);
    let (mut c, ack) = RawClient::connect_with(
        server.mqtt,
        connect_packet(ProtocolVersion::V311, "", false),
    )
    .await;
    // Return code 2 decodes to 0x85 (identifier rejected).
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert_eq!(ack.reason.to_v3_connack(), 2);
    assert_eq!(c.expect_closed().await, None);
}

// ---- 10. Overlapping subscriptions -------------------------------------

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_highest_qos() {
    let server = Server::start(&[]);
    let mut sub = v5(&server, "ovq-sub").await;
    sub.subscribe(1, "a/#", QoS::AtMostOnce).await;
    sub.subscribe(2, "a/b", QoS::ExactlyOnce).await;
    let mut publ = v5(&server, "ovq-pub").await;
    publ.publish("a/b", b"once", QoS::ExactlyOnce, false, Some(1))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"once");
    sub.ack(&p).await;
    // PUBREL for our PUBREC, then nothing else: no second copy.
    match sub.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(Some(r.packet_id), p.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.expect_silence(QUIET).await;
}
