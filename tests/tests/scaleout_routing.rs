//! Live routing between two `aerie gateway`s through a real nats-server: a
//! message published on one gateway reaches the subscribers of the same
//! tenant on the other (QoS 0/1/2, rumqttc v5 over TCP and 3.1.1 over
//! WebSocket), right after their SUBACK; shared subscriptions with members
//! on both gateways get each message once; tenants stay apart; a gateway
//! holds one NATS subscription per distinct filter; MQTT 5's per-subscription
//! features behave as in one process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::NatsServer;
use aerie_e2e::scaleout::{Cluster, Gateway};
use aerie_e2e::tenants::{Tenant, with_password};
use aerie_e2e::v5client::{V3, V5, v3_ws_options, v5_options};
use aerie_proto::{
    Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode, SubscriptionOptions,
};
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::json;

/// A control plane and two ready gateways (see [`Cluster::start`]).
fn cluster() -> Cluster {
    Cluster::start()
}

/// Tenants of these tests: limits lifted past the free plan's.
trait LiftedTenants {
    async fn tenant(&self, email: &str) -> (Tenant, String);
    async fn tenant_with(&self, email: &str, limits: serde_json::Value) -> (Tenant, String);
}

impl LiftedTenants for Cluster {
    /// A tenant with its limits lifted past the free plan's, and a token
    /// both gateways accept.
    async fn tenant(&self, email: &str) -> (Tenant, String) {
        self.tenant_with(email, json!({})).await
    }

    /// As [`Cluster::tenant`], with `limits` on top.
    async fn tenant_with(&self, email: &str, limits: serde_json::Value) -> (Tenant, String) {
        self.lifted_tenant(email, limits).await
    }
}

async fn raw(gateway: &Gateway, client_id: &str, token: &str) -> RawClient {
    let (c, ack) = RawClient::connect_with(
        gateway.mqtt,
        with_password(ProtocolVersion::V5, client_id, Some(token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

async fn rumqttc_v5(gateway: &Gateway, client_id: &str, token: &str) -> V5 {
    let mut options = v5_options(gateway.mqtt, client_id);
    options.set_credentials("anyone", token);
    let (c, ack) = V5::connect(options).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    c
}

async fn rumqttc_v3_ws(gateway: &Gateway, client_id: &str, token: &str) -> V3 {
    let mut options = v3_ws_options(gateway.ws, client_id);
    options.set_credentials("anyone", token);
    let (c, ack) = V3::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    c
}

/// The next PUBLISH within `wait`, if any (acknowledging nothing).
async fn publish_within(c: &mut RawClient, wait: Duration) -> Option<aerie_proto::Publish> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_within(left).await {
            Ok(Some(Packet::Publish(p))) => return Some(p),
            Ok(Some(_)) => {}
            Ok(None) | Err(()) => return None,
        }
    }
}

/// A retained QoS 1 PUBLISH with a message expiry interval of `secs`.
fn retained_expiring(topic: &str, payload: &'static [u8], secs: u32, packet_id: u16) -> Packet {
    Packet::Publish(aerie_proto::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic.into(),
        packet_id: Some(packet_id),
        payload: bytes::Bytes::from_static(payload),
        properties: PublishProperties {
            message_expiry_interval: Some(secs),
            ..Default::default()
        },
    })
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos3(q: QoS) -> rumqttc::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

#[tokio::test]
async fn a_message_published_on_one_gateway_after_the_suback_on_the_other_arrives_at_qos_0_1_2() {
    let c = cluster();
    let (_t, token) = c.tenant("routing@example.com").await;
    let mut v5 = rumqttc_v5(&c.b, "sub-v5", &token).await;
    let mut v3 = rumqttc_v3_ws(&c.b, "sub-v3", &token).await;
    let mut publisher = raw(&c.a, "pub", &token).await;

    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("home/{i}/temp");
        v5.client.subscribe(&topic, qos5(qos)).await.unwrap();
        loop {
            if let p5::Packet::SubAck(_) = v5.next_packet().await {
                break;
            }
        }
        v3.client.subscribe(&topic, qos3(qos)).await.unwrap();
        loop {
            if let rumqttc::Packet::SubAck(_) = v3.next_packet().await {
                break;
            }
        }
        // Published once, right after both SUBACKs: no retry.
        let reason = publisher
            .publish_acked(&topic, b"21.5", qos, false, 10 + i as u16)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS, "publisher on A at {qos:?}");
        let got = v5.next_publish().await;
        assert_eq!(
            (&got.topic[..], &got.payload[..]),
            (topic.as_bytes(), &b"21.5"[..])
        );
        assert_eq!(got.qos, qos5(qos));
        let got = v3.next_publish().await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            (topic.as_str(), &b"21.5"[..])
        );
        assert_eq!(got.qos, qos3(qos));
    }
    // And the other way round, from a 3.1.1 client over WebSocket on B.
    let mut sub_a = raw(&c.a, "sub-a", &token).await;
    sub_a.subscribe(1, "back/#", QoS::AtLeastOnce).await;
    v3.client
        .publish("back/x", rumqttc::QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    let got = publish_within(&mut sub_a, Duration::from_secs(5))
        .await
        .expect("B's message reached A");
    assert_eq!((&got.topic[..], &got.payload[..]), ("back/x", &b"ok"[..]));
}

#[tokio::test]
async fn every_suback_means_the_next_message_from_the_other_gateway_arrives() {
    let c = cluster();
    let (_t, token) = c.tenant("suback@example.com").await;
    let mut sub = raw(&c.b, "sub", &token).await;
    let mut publisher = raw(&c.a, "pub", &token).await;
    // A fresh filter each time: the SUBACK must wait for a new NATS interest.
    for i in 0..20u16 {
        let topic = format!("fresh/{i}");
        let ack = sub.subscribe(i + 1, &topic, QoS::AtMostOnce).await;
        assert_eq!(ack.reasons, [ReasonCode::SUCCESS]);
        publisher
            .publish_acked(&topic, b"x", QoS::AtMostOnce, false, 1)
            .await;
        let got = publish_within(&mut sub, Duration::from_secs(3)).await;
        assert_eq!(
            got.map(|p| p.topic.to_string()).as_deref(),
            Some(topic.as_str()),
            "message {i} published right after the SUBACK"
        );
    }
}

#[tokio::test]
async fn a_shared_subscription_with_members_on_both_gateways_gets_each_message_once() {
    let c = cluster();
    let (_t, token) = c.tenant("shared@example.com").await;
    let mut members = Vec::new();
    for (gateway, name) in [(&c.a, "a1"), (&c.a, "a2"), (&c.b, "b1"), (&c.b, "b2")] {
        let mut m = raw(gateway, name, &token).await;
        let ack = m
            .subscribe(1, "$share/workers/jobs/+", QoS::AtLeastOnce)
            .await;
        assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
        members.push((name, m));
    }
    // A plain subscriber on each gateway sees every message once, beside
    // the group: B's with two overlapping filters (two NATS subscriptions
    // of B match each message), A's beside the publisher.
    // Two client ids: one id is one session across the gateways.
    let mut plain_a = raw(&c.a, "plain-a", &token).await;
    plain_a.subscribe(1, "jobs/#", QoS::AtLeastOnce).await;
    let mut plain_b = raw(&c.b, "plain-b", &token).await;
    plain_b.subscribe(1, "jobs/+", QoS::AtLeastOnce).await;
    plain_b.subscribe(2, "jobs/#", QoS::AtLeastOnce).await;

    let mut publisher = raw(&c.a, "pub", &token).await;
    const N: u16 = 60;
    for i in 0..N {
        publisher
            .publish_acked(&format!("jobs/{i}"), b"job", QoS::AtLeastOnce, false, i + 1)
            .await;
    }
    let mut seen: HashMap<String, Vec<&str>> = HashMap::new();
    for (name, m) in &mut members {
        while let Some(p) = publish_within(m, Duration::from_millis(1500)).await {
            m.ack(&p).await;
            seen.entry(p.topic.to_string()).or_default().push(name);
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(seen.len(), usize::from(N), "every job reached one member");
    for side in ["a", "b"] {
        assert!(
            seen.values().any(|by| by[0].starts_with(side)),
            "no member on gateway {side} got a job: {seen:?}"
        );
    }
    for (side, plain) in [("A", &mut plain_a), ("B", &mut plain_b)] {
        let mut got = 0;
        while let Some(p) = publish_within(plain, Duration::from_millis(500)).await {
            plain.ack(&p).await;
            got += 1;
        }
        assert_eq!(
            got, N,
            "the plain subscriber on {side} got every message once"
        );
    }
}

#[tokio::test]
async fn two_tenants_with_the_same_topics_and_client_ids_on_both_gateways_see_nothing_of_each_other()
 {
    let c = cluster();
    let (_green, green) = c.tenant("green@example.com").await;
    let (_blue, blue) = c.tenant("blue@example.com").await;
    // The same client ids in both tenants; within a tenant the subscriber
    // and the publisher differ (one id is one session across the gateways).
    let mut green_b = raw(&c.b, "dev-b", &green).await;
    let mut blue_b = raw(&c.b, "dev-b", &blue).await;
    for s in [&mut green_b, &mut blue_b] {
        s.subscribe(1, "#", QoS::AtLeastOnce).await;
    }
    // Both publish on the same topic, from A, with the same client id.
    for (token, payload) in [(&green, "green"), (&blue, "blue")] {
        let mut publisher = raw(&c.a, "dev-a", token).await;
        publisher
            .publish_acked("home/door", payload.as_bytes(), QoS::AtLeastOnce, false, 1)
            .await;
    }
    for (subscriber, own) in [(&mut green_b, "green"), (&mut blue_b, "blue")] {
        let mut got = Vec::new();
        while let Some(p) = publish_within(subscriber, Duration::from_millis(1500)).await {
            subscriber.ack(&p).await;
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
        assert_eq!(got, [own], "{own}'s subscriber on B");
    }
}

/// The subscriptions of the NATS connections named `aerie-gateway-*`, from
/// the server's monitoring endpoint.
fn gateway_subscriptions(nats: &NatsServer) -> Vec<String> {
    let reply = aerie_e2e::http::send(nats.monitor, "GET", "/connz?subs=1&limit=1024", &[], "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let connz = reply.json();
    connz["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("aerie-gateway-"))
        })
        .flat_map(|c| {
            c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_thousand_clients_on_one_filter_hold_one_nats_subscription_dropped_after_the_last_leaves()
{
    let c = cluster();
    let (t, token) = c.tenant("fleet@example.com").await;
    let subject = format!("{}.t.{}.fleet.*.cmd", c.prefix, t.id);
    let count = || {
        gateway_subscriptions(NatsServer::shared())
            .iter()
            .filter(|s| **s == subject)
            .count()
    };
    let mut clients = Vec::new();
    for i in 0..1000 {
        let mut d = raw(&c.a, &format!("device-{i}"), &token).await;
        let ack = d.subscribe(1, "fleet/+/cmd", QoS::AtLeastOnce).await;
        assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
        clients.push(d);
    }
    assert_eq!(
        count(),
        1,
        "one NATS subscription for 1,000 clients on one filter"
    );
    // Delivered once to each of them from the other gateway.
    let mut publisher = raw(&c.b, "pub", &token).await;
    publisher
        .publish_acked("fleet/all/cmd", b"reboot", QoS::AtMostOnce, false, 1)
        .await;
    for d in clients.iter_mut().take(10) {
        let got = publish_within(d, Duration::from_secs(5))
            .await
            .expect("cmd");
        assert_eq!(&got.payload[..], b"reboot");
    }
    for d in clients {
        d.disconnect().await;
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the NATS subscription outlived its last client by 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn no_local_retain_as_published_subscription_ids_and_expiry_behave_across_gateways_as_in_one_process()
 {
    let c = cluster();
    let (_t, token) = c.tenant("features@example.com").await;
    let mut on_b = raw(&c.b, "b", &token).await;
    let ack = on_b
        .subscribe_with(
            1,
            "f/+",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                retain_as_published: true,
                ..Default::default()
            },
            Some(7),
        )
        .await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
    let mut plain_b = raw(&c.b, "plain", &token).await;
    plain_b.subscribe(1, "f/#", QoS::AtLeastOnce).await;
    // The publisher subscribes with no-local: it must not get its own message.
    let mut on_a = raw(&c.a, "a", &token).await;
    on_a.subscribe_with(
        1,
        "f/+",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            ..Default::default()
        },
        None,
    )
    .await;

    on_a.send(retained_expiring("f/x", b"kept", 100, 1)).await;
    let got = publish_within(&mut on_b, Duration::from_secs(5))
        .await
        .expect("B's subscriber got it");
    assert!(got.retain, "retain-as-published keeps the flag");
    assert_eq!(got.properties.subscription_identifiers, [7]);
    let left = got.properties.message_expiry_interval.expect("expiry kept");
    assert!((90..=100).contains(&left), "expiry left: {left}");
    let got = publish_within(&mut plain_b, Duration::from_secs(5))
        .await
        .expect("the plain subscriber got it");
    assert!(
        !got.retain,
        "without retain-as-published the flag is cleared"
    );
    assert!(got.properties.subscription_identifiers.is_empty());
    assert!(
        publish_within(&mut on_a, Duration::from_millis(800))
            .await
            .is_none(),
        "no-local: the publisher got its own message back"
    );
}

/// The retained messages a new subscriber to `filter` on `gateway` gets,
/// as (topic, payload), sorted.
async fn retained_on(gateway: &Gateway, token: &str, filter: &str) -> Vec<(String, String)> {
    // A fresh client id each time: one id is one session across the
    // gateways, and the last reader may not be gone yet.
    static READERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut c = raw(gateway, &format!("reader-{n}"), token).await;
    c.subscribe(1, filter, QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while let Some(p) = publish_within(&mut c, Duration::from_millis(700)).await {
        // Routed before its PUBACK: nothing live comes after the SUBSCRIBE.
        assert!(p.retain, "a retained message is sent with RETAIN");
        c.ack(&p).await;
        let payload = String::from_utf8_lossy(&p.payload).into_owned();
        got.push((p.topic.to_string(), payload));
    }
    got.sort();
    got
}

#[tokio::test]
async fn a_retained_message_set_on_one_gateway_is_received_on_the_other_and_cleared_from_it() {
    let c = cluster();
    let (_t, token) = c.tenant("retained@example.com").await;
    let mut on_a = raw(&c.a, "setter", &token).await;
    for (topic, payload) in [("r/kitchen", "21"), ("r/hall/lamp", "on"), ("other", "x")] {
        let reason = on_a
            .publish_acked(topic, payload.as_bytes(), QoS::AtLeastOnce, true, 1)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
    let kept = [
        ("r/hall/lamp".to_string(), "on".to_string()),
        ("r/kitchen".to_string(), "21".to_string()),
    ];
    // Each PUBACK came once JetStream kept the message: B has them now.
    assert_eq!(retained_on(&c.b, &token, "r/#").await, kept);
    assert_eq!(retained_on(&c.b, &token, "r/+").await, kept[1..]);
    // A 3.1.1 client over WebSocket on B gets it too, then clears it.
    let mut v3 = rumqttc_v3_ws(&c.b, "ws", &token).await;
    v3.client
        .subscribe("r/kitchen", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = v3.next_publish().await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"21");
    let mut on_b = raw(&c.b, "clearer", &token).await;
    on_b.publish_acked("r/kitchen", b"", QoS::AtLeastOnce, true, 1)
        .await;
    assert_eq!(retained_on(&c.a, &token, "r/#").await, kept[..1]);

    // One whose message expiry ran out is no longer sent, on either gateway.
    on_a.send(retained_expiring("r/brief", b"soon gone", 1, 2))
        .await;
    assert!(matches!(on_a.recv().await, Some(Packet::PubAck(_))));
    assert_eq!(retained_on(&c.b, &token, "r/brief").await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(retained_on(&c.b, &token, "r/#").await, kept[..1]);
}

#[tokio::test]
async fn a_tenants_retained_quota_holds_across_both_gateways() {
    let c = cluster();
    let (_t, token) = c
        .tenant_with("quota@example.com", json!({"retained_messages": 2}))
        .await;
    let mut on_a = raw(&c.a, "a", &token).await;
    let mut on_b = raw(&c.b, "b", &token).await;
    let (ok, over) = (ReasonCode::SUCCESS, ReasonCode::QUOTA_EXCEEDED);
    let publish = async |c: &mut RawClient, topic: &str, payload: &str, qos| {
        c.publish_acked(topic, payload.as_bytes(), qos, true, 1)
            .await
    };
    assert_eq!(publish(&mut on_a, "q/1", "1", QoS::AtLeastOnce).await, ok);
    assert_eq!(publish(&mut on_b, "q/2", "2", QoS::AtLeastOnce).await, ok);
    // A third topic, on either gateway, is over the tenant's two (0x97, as
    // in one process); replacing one it has is not.
    assert_eq!(publish(&mut on_a, "q/3", "3", QoS::AtLeastOnce).await, over);
    assert_eq!(publish(&mut on_b, "q/4", "4", QoS::ExactlyOnce).await, over);
    assert_eq!(publish(&mut on_b, "q/1", "1b", QoS::AtLeastOnce).await, ok);
    let expected = [
        ("q/1".to_string(), "1b".to_string()),
        ("q/2".to_string(), "2".to_string()),
    ];
    assert_eq!(retained_on(&c.a, &token, "q/#").await, expected);
    assert_eq!(retained_on(&c.b, &token, "q/#").await, expected);
}

fn gateway_metric(gateway: &Gateway, name: &str, labels: &str) -> f64 {
    let body = aerie_e2e::http::send(gateway.http, "GET", "/metrics", &[], "").body;
    aerie_e2e::server::sum_metric(&body, name, labels)
}

#[tokio::test]
async fn a_backbone_message_that_does_not_decode_is_counted_and_dropped_and_routing_goes_on() {
    let c = cluster();
    let (t, token) = c.tenant("garbage@example.com").await;
    let mut sub = raw(&c.b, "sub", &token).await;
    sub.subscribe(1, "g/#", QoS::AtMostOnce).await;
    // Anyone with access to NATS could publish on a tenant's subject.
    NatsServer::shared().publish(&format!("{}.t.{}.g.x", c.prefix, t.id), b"not a message");
    let mut publisher = raw(&c.a, "pub", &token).await;
    publisher
        .publish_acked("g/ok", b"ok", QoS::AtMostOnce, false, 1)
        .await;
    let got = publish_within(&mut sub, Duration::from_secs(5))
        .await
        .expect("the next message");
    assert_eq!(&got.payload[..], b"ok", "the garbage became no message");
    assert_eq!(
        gateway_metric(&c.b, "aerie_backbone_decode_failures_total", ""),
        1.0
    );
}

#[tokio::test]
async fn a_topic_too_long_for_a_nats_subject_stays_on_its_gateway_and_is_counted() {
    let c = cluster();
    let (_t, token) = c.tenant("long@example.com").await;
    let topic = format!("long/{}", "x".repeat(4000));
    let mut here = raw(&c.a, "here", &token).await;
    here.subscribe(1, "long/#", QoS::AtMostOnce).await;
    let mut there = raw(&c.b, "there", &token).await;
    there.subscribe(1, "long/#", QoS::AtMostOnce).await;
    let mut publisher = raw(&c.a, "pub", &token).await;
    // QoS 0: a QoS 1/2 one is refused, as the message log cannot keep it
    // (scaleout_durable.rs).
    publisher
        .publish_acked(&topic, b"big", QoS::AtMostOnce, false, 1)
        .await;
    let got = publish_within(&mut here, Duration::from_secs(5))
        .await
        .expect("delivered on its own gateway");
    assert_eq!(got.topic.len(), topic.len());
    assert_eq!(
        gateway_metric(
            &c.a,
            "aerie_backbone_dropped_total",
            "reason=\"subject_too_long\""
        ),
        1.0
    );
    // Its NATS connection was not closed over it: routing goes on.
    publisher
        .publish_acked("long/short", b"ok", QoS::AtLeastOnce, false, 2)
        .await;
    let got = publish_within(&mut there, Duration::from_secs(5))
        .await
        .expect("the next message crossed");
    assert_eq!(&got.payload[..], b"ok");
}

#[tokio::test]
async fn topics_with_what_nats_forbids_in_a_subject_cross_gateways_as_they_were() {
    let c = cluster();
    let (_t, token) = c.tenant("escape@example.com").await;
    let cases = [
        ("dots/+/c", "dots/a.b/c"),
        ("sp ace/#", "sp ace/x y"),
        ("+/lead/+/empty", "/lead//empty"),
        ("star/*/>", "star/*/>"),
        ("per%cent/#", "per%cent/%41"),
        ("unicode/+", "unicode/température"),
    ];
    let mut sub = raw(&c.b, "sub", &token).await;
    for (i, (filter, _)) in cases.iter().enumerate() {
        let ack = sub.subscribe(i as u16 + 1, filter, QoS::AtMostOnce).await;
        assert_eq!(ack.reasons, [ReasonCode::SUCCESS], "{filter}");
    }
    let mut publisher = raw(&c.a, "pub", &token).await;
    for (_, topic) in cases {
        publisher
            .publish_acked(topic, b"x", QoS::AtMostOnce, false, 1)
            .await;
        let got = publish_within(&mut sub, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{topic:?} did not cross"));
        assert_eq!(&got.topic[..], topic);
    }
    // And a topic a filter does not match stays away, escaped or not.
    publisher
        .publish_acked("dots/a/b/c", b"x", QoS::AtMostOnce, false, 1)
        .await;
    assert!(
        publish_within(&mut sub, Duration::from_millis(500))
            .await
            .is_none()
    );
}

/// QoS 0 PUBLISHes each flooding publisher writes at once.
const PER_PUBLISHER: usize = 100_000;

#[tokio::test]
async fn flooding_qos_0_publishers_are_paced_by_the_backbone_not_dropped_at_its_send_queue() {
    let c = cluster();
    const GIB: u64 = 1 << 30;
    let (_t, token) = c
        .tenant_with(
            "flood@example.com",
            json!({
                "client_publish_rate_msgs": 10_000_000, "client_publish_rate_bytes": 10 * GIB,
                "publish_rate_msgs": 10_000_000, "publish_rate_bytes": 10 * GIB,
            }),
        )
        .await;
    let mut sub = raw(&c.b, "sub", &token).await;
    sub.subscribe(1, "flood/#", QoS::AtMostOnce).await;
    // Four publishers, each writing more QoS 0 PUBLISHes in one burst than
    // gateway A's send queue to NATS holds (65,536): faster than A's sender,
    // they filled it and were dropped.
    let mut one = bytes::BytesMut::new();
    aerie_proto::encode(
        &Packet::Publish(aerie_e2e::raw::publish_packet(
            "flood/x",
            b"12345678",
            QoS::AtMostOnce,
            None,
        )),
        ProtocolVersion::V5,
        &mut one,
    )
    .unwrap();
    let burst = one.repeat(PER_PUBLISHER);
    let flood = |n: usize| {
        let (token, burst) = (token.clone(), burst.clone());
        let a = &c.a;
        async move {
            let mut publisher = raw(a, &format!("pub-{n}"), &token).await;
            publisher.write_bytes(&burst).await.unwrap();
            // Acknowledged once A handled every packet before it (which can
            // take a while on a loaded machine: waited for generously).
            publisher
                .send(Packet::Publish(aerie_e2e::raw::publish_packet(
                    "flood/end",
                    b"end",
                    QoS::AtLeastOnce,
                    Some(1),
                )))
                .await;
            loop {
                match publisher.recv_within(Duration::from_secs(60)).await {
                    Ok(Some(Packet::PubAck(_))) => break,
                    Ok(Some(_)) => {}
                    other => panic!("no PUBACK: {other:?}"),
                }
            }
        }
    };
    tokio::join!(flood(0), flood(1), flood(2), flood(3));
    assert_eq!(
        gateway_metric(
            &c.a,
            "aerie_backbone_dropped_total",
            "reason=\"queue_full\""
        ),
        0.0,
        "the publishers waited for room instead"
    );
    // And every one of them goes out (the sender may still be at it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway_metric(&c.a, "aerie_backbone_published_total", "")
        < (4 * PER_PUBLISHER + 4) as f64
    {
        assert!(
            Instant::now() < deadline,
            "A sent them all to NATS: {}",
            aerie_e2e::http::send(c.a.http, "GET", "/metrics", &[], "")
                .body
                .lines()
                .filter(|l| l.contains("backbone") || l.contains("limit") || l.contains("dropped"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
