//! A tenant's retained quota across two `aerie gateway`s: clients on both
//! gateways setting new retained topics at the same moment keep exactly the
//! tenant's count (or bytes), the others get PUBACK 0x97; replacing a
//! topic's message counts the difference; a clear on one gateway frees room
//! for a set on the other. What is kept is read back as a user would: the
//! REST API's `GET …/retained` and SUBSCRIBE on each gateway.

use std::time::Duration;

use aerie_e2e::RawClient;
use aerie_e2e::http::Api;
use aerie_e2e::scaleout::{Cluster, Gateway};
use aerie_e2e::tenants::Tenant;
use aerie_proto::{Packet, QoS, ReasonCode};
use futures_util::future::join_all;
use serde_json::{Value, json};

const OK: ReasonCode = ReasonCode::SUCCESS;
const OVER: ReasonCode = ReasonCode::QUOTA_EXCEEDED;

async fn client(gateway: &Gateway, client_id: &str, token: &str) -> RawClient {
    let (c, reason) = gateway.connect_v5(client_id, token).await;
    assert_eq!(reason, ReasonCode::SUCCESS, "{client_id}");
    c
}

/// A retained QoS 1 PUBLISH and its PUBACK's reason.
async fn retain(c: &mut RawClient, topic: &str, payload: &[u8]) -> ReasonCode {
    c.publish_acked(topic, payload, QoS::AtLeastOnce, true, 1)
        .await
}

/// `clients` clients on each gateway, all at once, each setting `per_client`
/// new topics `<root>/<gateway><client>-<n>` (one after the other, as one
/// client does); every PUBACK's reason.
async fn set_new_topics_at_once(
    c: &Cluster,
    token: &str,
    root: &str,
    clients: usize,
    per_client: usize,
    payload: &[u8],
) -> Vec<ReasonCode> {
    let mut setters = Vec::new();
    for (name, gateway) in [("a", &c.a), ("b", &c.b)] {
        for i in 0..clients {
            setters.push(client(gateway, &format!("{name}{i}"), token).await);
        }
    }
    let runs = setters
        .iter_mut()
        .enumerate()
        .map(|(i, setter)| async move {
            let mut reasons = Vec::new();
            for n in 0..per_client {
                reasons.push(retain(setter, &format!("{root}/{i:02}-{n:02}"), payload).await);
            }
            reasons
        });
    join_all(runs).await.into_iter().flatten().collect()
}

fn count(reasons: &[ReasonCode], reason: ReasonCode) -> usize {
    reasons.iter().filter(|r| **r == reason).count()
}

/// The topics `GET /v1/tenants/{tid}/retained?filter=#` lists.
fn listed(c: &Cluster, t: &Tenant) -> Vec<String> {
    let listed: Value = c
        .control
        .api(
            "GET",
            &format!("/v1/tenants/{}/retained?filter=%23", t.id),
            Some(&t.api_key),
            None,
        )
        .expect(200);
    let mut topics: Vec<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["topic"].as_str().expect("a topic").to_owned())
        .collect();
    topics.sort();
    topics
}

/// The topics of the retained messages a new subscriber to `#` on
/// `gateway` gets.
async fn received_on(gateway: &Gateway, token: &str, reader: &str) -> Vec<String> {
    let mut c = client(gateway, reader, token).await;
    c.subscribe(1, "#", QoS::AtLeastOnce).await;
    let mut topics = Vec::new();
    while let Ok(Some(packet)) = c.recv_within(Duration::from_millis(700)).await {
        if let Packet::Publish(p) = packet {
            assert!(p.retain, "sent on SUBSCRIBE, flagged retained");
            c.ack(&p).await;
            topics.push(p.topic.to_string());
        }
    }
    topics.sort();
    topics
}

/// The weight the quota counts for a retained message: its topic and
/// payload plus 64 bytes (as in one process).
fn weight(topic: &str, payload: &[u8]) -> usize {
    topic.len() + payload.len() + 64
}

#[tokio::test]
async fn n_new_topics_set_at_once_on_both_gateways_keep_exactly_n() {
    let c = Cluster::start();
    // N = 1: the first sets on both gateways race for the one place (five
    // tenants, five races); N = 10: they race at every count on the way.
    for (round, n) in [1, 1, 1, 1, 1, 10].into_iter().enumerate() {
        let (t, token) = c
            .lifted_tenant(
                &format!("count-{round}@example.com"),
                json!({"retained_messages": n}),
            )
            .await;
        // 8 clients (4 per gateway) × 8 new topics: 64 sets for N places.
        let reasons = set_new_topics_at_once(&c, &token, "n", 4, 8, b"x").await;
        assert_eq!(count(&reasons, OK), n, "N = {n}: {reasons:?}");
        assert_eq!(count(&reasons, OVER), 64 - n, "N = {n}: {reasons:?}");
        let kept = listed(&c, &t);
        assert_eq!(kept.len(), n, "{kept:?}");
        assert_eq!(received_on(&c.a, &token, "reader-a").await, kept);
        assert_eq!(received_on(&c.b, &token, "reader-b").await, kept);
        // Full: a new topic on either gateway is refused, a replacement is not.
        let mut late = client(&c.b, "late", &token).await;
        assert_eq!(retain(&mut late, "n/late", b"x").await, OVER);
        assert_eq!(retain(&mut late, &kept[n - 1], b"replaced").await, OK);
        assert_eq!(listed(&c, &t), kept);
    }
}

#[tokio::test]
async fn the_tenants_retained_bytes_hold_across_both_gateways_and_a_replacement_counts_the_difference()
 {
    let c = Cluster::start();
    let payload = [b'p'; 100];
    // Every topic `b/NN-NN` weighs the same: room for exactly 6.
    let one = weight("b/00-00", &payload);
    let (t, token) = c
        .lifted_tenant("bytes@example.com", json!({"retained_bytes": 6 * one + 10}))
        .await;
    let reasons = set_new_topics_at_once(&c, &token, "b", 4, 8, &payload).await;
    assert_eq!(count(&reasons, OK), 6, "{reasons:?}");
    assert_eq!(count(&reasons, OVER), 58, "{reasons:?}");
    let kept = listed(&c, &t);
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert_eq!(received_on(&c.b, &token, "reader").await, kept);

    // 10 bytes are left: a replacement 10 bytes larger fits, one more does not.
    let mut on_a = client(&c.a, "replacer", &token).await;
    let mut on_b = client(&c.b, "other", &token).await;
    assert_eq!(retain(&mut on_a, &kept[0], &[b'p'; 111]).await, OVER);
    assert_eq!(retain(&mut on_a, &kept[0], &[b'p'; 110]).await, OK);
    assert_eq!(retain(&mut on_b, &kept[1], &[b'p'; 101]).await, OVER);
    // Shrinking one gives the difference back, to the other gateway too.
    assert_eq!(retain(&mut on_a, &kept[0], &[b'p'; 50]).await, OK);
    assert_eq!(retain(&mut on_b, &kept[1], &[b'p'; 160]).await, OK);
    assert_eq!(retain(&mut on_b, &kept[2], &[b'p'; 101]).await, OVER);
}

#[tokio::test]
async fn a_clear_on_one_gateway_frees_room_for_a_set_on_the_other() {
    let c = Cluster::start();
    let payload = [b'p'; 200];
    let one = weight("c/1", &payload);
    let (t, token) = c
        .lifted_tenant(
            "clear@example.com",
            json!({"retained_messages": 3, "retained_bytes": 2 * one + 50}),
        )
        .await;
    let mut on_a = client(&c.a, "a", &token).await;
    let mut on_b = client(&c.b, "b", &token).await;
    // The bytes are full with two, set on A: B's third is over them.
    assert_eq!(retain(&mut on_a, "c/1", &payload).await, OK);
    assert_eq!(retain(&mut on_a, "c/2", &payload).await, OK);
    assert_eq!(retain(&mut on_b, "c/3", &payload).await, OVER);
    // Cleared on A (an empty retained payload): B's set now fits.
    assert_eq!(retain(&mut on_a, "c/1", b"").await, OK);
    assert_eq!(retain(&mut on_b, "c/3", &payload).await, OK);
    assert_eq!(listed(&c, &t), ["c/2", "c/3"]);

    // The count: with small messages the third topic fills it.
    assert_eq!(retain(&mut on_b, "c/4", b"s").await, OVER, "bytes");
    assert_eq!(retain(&mut on_a, "c/2", b"").await, OK);
    assert_eq!(retain(&mut on_a, "c/4", b"s").await, OK);
    assert_eq!(retain(&mut on_b, "c/5", b"s").await, OK);
    assert_eq!(retain(&mut on_a, "c/6", b"s").await, OVER, "count");
    assert_eq!(retain(&mut on_b, "c/5", b"").await, OK);
    assert_eq!(retain(&mut on_a, "c/6", b"s").await, OK);
    assert_eq!(listed(&c, &t), ["c/3", "c/4", "c/6"]);
    assert_eq!(
        received_on(&c.a, &token, "reader").await,
        ["c/3", "c/4", "c/6"]
    );
}

/// A retained message comes after the SUBACK of the subscription it is for,
/// on both gateways: the gateway asks JetStream for it while the SUBACK
/// waits for the subscription to be live on NATS, and the answer may come
/// first (it was then queued ahead of the SUBACK, and a client waiting for
/// its SUBACK dropped it). Many fresh filters, so the race is met.
#[tokio::test]
async fn a_retained_message_always_follows_the_suback_of_its_subscription() {
    const TOPICS: usize = 150;
    let c = Cluster::start();
    let (_t, token) = c
        .lifted_tenant(
            "order@example.com",
            json!({"retained_messages": 1000, "subscriptions_per_client": 1000}),
        )
        .await;
    let mut setter = client(&c.a, "setter", &token).await;
    for i in 0..TOPICS {
        assert_eq!(
            retain(&mut setter, &format!("order/{i}"), b"kept").await,
            OK
        );
    }
    for (name, gateway) in [("a", &c.a), ("b", &c.b)] {
        let mut s = client(gateway, &format!("subscriber-{name}"), &token).await;
        for i in 0..TOPICS {
            let packet_id = u16::try_from(i + 1).expect("small");
            s.send(Packet::Subscribe(aerie_proto::Subscribe {
                packet_id,
                filters: vec![(
                    format!("order/{i}").into(),
                    aerie_proto::SubscriptionOptions::default(),
                )],
                properties: Default::default(),
            }))
            .await;
            match s.recv().await {
                Some(Packet::SubAck(ack)) => {
                    assert_eq!((ack.packet_id, &ack.reasons[..]), (packet_id, &[OK][..]));
                }
                other => panic!("gateway {name}, order/{i}: SUBACK first, got {other:?}"),
            }
            match s.recv().await {
                Some(Packet::Publish(p)) => {
                    assert_eq!((&*p.topic, p.retain), (&*format!("order/{i}"), true));
                }
                other => panic!("gateway {name}, order/{i}: its retained message, got {other:?}"),
            }
        }
    }
}
