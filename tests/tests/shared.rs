//! Shared subscriptions (`$share/<group>/<filter>`, MQTT 5 §4.8.2).

use std::collections::BTreeMap;
use std::time::Duration;

use aerie_e2e::v5client::{V5, v5_options};
use aerie_e2e::{RawClient, Server};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::Packet as P5;

/// A rumqttc member of `filter`, subscribed (SUBACK seen).
async fn member(server: &Server, id: &str, filter: &str) -> V5 {
    let (mut c, _) = V5::connect(v5_options(server.mqtt, id)).await;
    c.client.subscribe(filter, Q5::AtLeastOnce).await.unwrap();
    match c.next_packet().await {
        P5::SubAck(a) => assert_eq!(
            a.return_codes,
            [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
                Q5::AtLeastOnce
            )]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    c
}

/// Publishes `n` QoS 1 messages "m0".."m{n-1}" on `topic`.
async fn publish_n(server: &Server, topic: &str, n: usize) -> V5 {
    let (publ, _) = V5::connect(v5_options(server.mqtt, "shared-pub")).await;
    for i in 0..n {
        publ.client
            .publish(topic, Q5::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    publ
}

/// Everything the members receive until `expected` messages arrived in total
/// and then a quiet spell passed: payload → receiving member indexes.
async fn collect(members: &mut [V5], expected: usize) -> BTreeMap<String, Vec<usize>> {
    let mut got: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut quiet_since = None;
    loop {
        let mut any = false;
        for (i, m) in members.iter_mut().enumerate() {
            while let Ok(p) = m.events.try_recv() {
                if let P5::Publish(p) = p {
                    got.entry(String::from_utf8(p.payload.to_vec()).unwrap())
                        .or_default()
                        .push(i);
                    total += 1;
                    any = true;
                }
            }
        }
        let now = tokio::time::Instant::now();
        if total >= expected {
            let since = *quiet_since.get_or_insert(now);
            if any {
                quiet_since = Some(now);
            } else if now - since > Duration::from_millis(300) {
                return got;
            }
        }
        assert!(now < deadline, "only {total} of {expected} delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shared_group_delivers_each_message_to_exactly_one_member() {
    let server = Server::start(&[]);
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(member(&server, &format!("sh-m{i}"), "$share/g/sh/t").await);
    }
    let _publ = publish_n(&server, "sh/t", 30).await;
    let got = collect(&mut members, 30).await;
    assert_eq!(got.len(), 30, "every message delivered");
    for (payload, who) in &got {
        assert_eq!(who.len(), 1, "{payload} delivered to members {who:?}");
    }
    for i in 0..3 {
        let n = got.values().filter(|w| w[0] == i).count();
        assert!(n > 0, "member {i} got nothing: load not spread");
    }
}

#[tokio::test]
async fn two_shared_groups_on_one_filter_each_get_every_message() {
    let server = Server::start(&[]);
    let mut members = vec![
        member(&server, "g1-a", "$share/g1/sh/t").await,
        member(&server, "g1-b", "$share/g1/sh/t").await,
        member(&server, "g2-a", "$share/g2/sh/t").await,
        member(&server, "g2-b", "$share/g2/sh/t").await,
    ];
    let _publ = publish_n(&server, "sh/t", 10).await;
    let got = collect(&mut members, 20).await;
    assert_eq!(got.len(), 10);
    for (payload, who) in &got {
        let g1 = who.iter().filter(|&&i| i < 2).count();
        let g2 = who.iter().filter(|&&i| i >= 2).count();
        assert_eq!((g1, g2), (1, 1), "{payload} went to {who:?}");
    }
}

#[tokio::test]
async fn unacknowledged_messages_of_leaving_member_go_to_another_member() {
    let server = Server::start(&[]);
    let (mut holder, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "holder", true).await;
    holder.subscribe(1, "$share/w/jobs", QoS::AtLeastOnce).await;
    let (mut worker, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "worker", true).await;
    worker.subscribe(1, "$share/w/jobs", QoS::AtLeastOnce).await;

    let (mut publ, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "jobs-pub", true).await;
    for i in 0..4u16 {
        publ.publish(
            "jobs",
            format!("j{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            Some(i + 1),
        )
        .await;
        assert!(matches!(publ.recv().await, Some(Packet::PubAck(_))));
    }

    // The holder never acknowledges what it gets.
    let mut held = Vec::new();
    while let Ok(Some(Packet::Publish(p))) = holder.recv_within(Duration::from_millis(300)).await {
        held.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert!(!held.is_empty(), "round robin gave the holder nothing");
    let mut done = Vec::new();
    for _ in 0..4 - held.len() {
        let p = worker.recv_publish().await;
        worker.ack(&p).await;
        done.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }

    drop(holder); // connection lost with messages in flight
    let mut redelivered = Vec::new();
    for _ in 0..held.len() {
        let p = worker.recv_publish().await;
        worker.ack(&p).await;
        redelivered.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    redelivered.sort();
    held.sort();
    assert_eq!(redelivered, held);
    worker.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn shared_subscriber_gets_no_retained_messages_on_subscribe() {
    let server = Server::start(&[]);
    let (mut publ, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "ret-pub", true).await;
    publ.publish("shr/t", b"kept", QoS::AtLeastOnce, true, Some(1))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubAck(_))));

    let (mut shared, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "shr-sub", true).await;
    let ack = shared
        .subscribe(1, "$share/g/shr/#", QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
    shared.expect_silence(Duration::from_millis(400)).await;

    // The retained message is there: a plain subscriber gets it.
    let (mut plain, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "plain-sub", true).await;
    plain.subscribe(1, "shr/#", QoS::AtLeastOnce).await;
    let p = plain.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"kept");
}
