//! Per-tenant limits through the real `aerie serve`: each limit set small on
//! tenant A with the admin PATCH, then gone over on MQTT 5 (the reason code
//! that says so) and 3.1.1 (its closest behaviour), counted in
//! `aerie_limit_exceeded_total{limit}`, while tenant B, connected at the same
//! time, goes on as usual.

use std::time::{Duration, Instant};

use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{
    ConnAck, ConnectProperties, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    Subscribe, SubscribeProperties, SubscriptionOptions,
};
use serde_json::{Value, json};

const ADMIN: &str = "e2e-admin-token-0123456789abcdefghij";
const EXCEEDED: &str = "aerie_limit_exceeded_total";
const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V311;

/// A server with an admin token and two tenants of one account, each with a
/// token that connects any client id.
struct Two {
    server: Server,
    a: Tenant,
    b: Tenant,
    a_token: String,
    b_token: String,
}

fn two_tenants() -> Two {
    let server = ServerOptions::default()
        .anonymous(false)
        .env("AERIE_ADMIN_TOKEN", ADMIN)
        .start();
    let a = tenant(&server, "a@example.com");
    let b = tenant(&server, "b@example.com");
    let (a_token, _) = mint(&server, &a, json!({}));
    let (b_token, _) = mint(&server, &b, json!({}));
    Two {
        server,
        a,
        b,
        a_token,
        b_token,
    }
}

impl Two {
    async fn connect_a(&self, version: ProtocolVersion, id: &str) -> (RawClient, ConnAck) {
        connect(
            &self.server,
            version,
            id,
            &self.a_token,
            ConnectProperties::default(),
        )
        .await
    }

    async fn connect_b(&self, version: ProtocolVersion, id: &str) -> (RawClient, ConnAck) {
        connect(
            &self.server,
            version,
            id,
            &self.b_token,
            ConnectProperties::default(),
        )
        .await
    }

    async fn limit_a(&self, patch: Value) {
        self.limit(&self.a, &self.a_token, patch).await
    }

    /// PATCHes a tenant's limits and waits until a new connection of it sees
    /// them: CONNACK announces the marker Maximum Packet Size sent along, or
    /// refuses (which the old limits never do in these tests).
    async fn limit(&self, tenant: &Tenant, token: &str, mut patch: Value) {
        let marker = match patch.get("max_packet_size") {
            Some(v) => v.as_u64().unwrap() as u32,
            None => {
                let m = 100_000 + rand_u16();
                patch["max_packet_size"] = json!(m);
                m
            }
        };
        set_limits(&self.server, tenant, &patch);
        let since = Instant::now();
        loop {
            let (c, ack) = connect(
                &self.server,
                V5,
                "limits-probe",
                token,
                ConnectProperties::default(),
            )
            .await;
            if ack.reason.is_error() || ack.properties.maximum_packet_size == Some(marker) {
                if !ack.reason.is_error() {
                    c.disconnect().await;
                }
                return;
            }
            c.disconnect().await;
            assert!(
                since.elapsed() < Duration::from_millis(2500),
                "limits not applied after {:?}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    fn exceeded(&self, limit: &str) -> f64 {
        self.server.metric(EXCEEDED, &format!("limit=\"{limit}\""))
    }

    /// Waits (up to 5 s) for the `limit` counter to reach at least `want`.
    fn wait_exceeded(&self, limit: &str, want: f64) -> f64 {
        let deadline = Instant::now() + aerie_e2e::WAIT;
        loop {
            let v = self.exceeded(limit);
            if v >= want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn rand_u16() -> u32 {
    u32::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u16,
    )
}

fn set_limits(server: &Server, tenant: &Tenant, patch: &Value) {
    server
        .api(
            "PATCH",
            &format!("/v1/admin/tenants/{}/limits", tenant.id),
            Some(ADMIN),
            Some(patch),
        )
        .expect(200);
}

async fn connect(
    server: &Server,
    version: ProtocolVersion,
    client_id: &str,
    token: &str,
    properties: ConnectProperties,
) -> (RawClient, ConnAck) {
    let mut c = with_password(version, client_id, Some(token));
    c.properties = properties;
    RawClient::connect_with(server.mqtt, c).await
}

/// A QoS 1 PUBLISH on topic `t`; its PUBACK reason.
async fn pub1(c: &mut RawClient, payload: &[u8], id: u16) -> ReasonCode {
    c.publish_acked("t", payload, QoS::AtLeastOnce, false, id)
        .await
}

fn quota_exceeded(reasons: &[ReasonCode]) -> usize {
    reasons
        .iter()
        .filter(|r| **r == ReasonCode::QUOTA_EXCEEDED)
        .count()
}

fn ok(ack: &ConnAck) {
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
}

/// QoS 1 round trip inside one tenant: `publisher` → `subscriber` (which
/// must hold a subscription to `topic`).
async fn round_trip(publisher: &mut RawClient, subscriber: &mut RawClient, topic: &str, id: u16) {
    let reason = publisher
        .publish_acked(topic, b"ping", QoS::AtLeastOnce, false, id)
        .await;
    assert!(!reason.is_error(), "{reason:?}");
    let p = subscriber.recv_publish().await;
    assert_eq!(&p.topic[..], topic);
    subscriber.ack(&p).await;
}

#[tokio::test]
async fn connections_over_the_limit_get_0x97_or_3_1_1_code_3_while_another_tenant_connects() {
    let t = two_tenants();
    t.limit_a(json!({"connections": 2})).await;
    let (_a1, ack) = t.connect_a(V5, "a1").await;
    ok(&ack);
    let (_a2, ack) = t.connect_a(V3, "a2").await;
    ok(&ack);
    let (mut a3, ack) = t.connect_a(V5, "a3").await;
    assert_eq!(ack.reason, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(a3.expect_closed().await, None);
    let (_, ack) = t.connect_a(V3, "a4").await;
    assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE, "3.1.1 code 3");
    assert_eq!(t.wait_exceeded("connections", 2.0), 2.0);
    // B is not counted against A.
    let mut bs = Vec::new();
    for i in 0..4 {
        let (b, ack) = t.connect_b(V5, &format!("b{i}")).await;
        ok(&ack);
        bs.push(b);
    }
    // A client reconnecting while its old connection is still attached
    // takes it over, even at the limit (its ghost frees the slot).
    let (_a2_again, ack) = t.connect_a(V5, "a2").await;
    ok(&ack);
    let (_, ack) = t.connect_a(V5, "a6").await;
    assert_eq!(ack.reason, ReasonCode::QUOTA_EXCEEDED, "still at the limit");
    // A connection that ends frees its slot.
    drop(_a1);
    let since = Instant::now();
    loop {
        let (_c, ack) = t.connect_a(V5, "a5").await;
        if ack.reason == ReasonCode::SUCCESS {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(2), "slot not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connects_over_the_rate_get_0x9f_or_3_1_1_code_3_while_another_tenant_connects() {
    let t = two_tenants();
    t.limit_a(json!({"connect_rate": 2})).await;
    // A fresh burst: one second's worth (2).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = t.exceeded("connect_rate");
    let (_c1, ack) = t.connect_a(V5, "a1").await;
    ok(&ack);
    let (_c2, ack) = t.connect_a(V5, "a2").await;
    ok(&ack);
    let (_, ack) = t.connect_a(V5, "a3").await;
    assert_eq!(ack.reason, ReasonCode::CONNECTION_RATE_EXCEEDED);
    let (_, ack) = t.connect_a(V3, "a4").await;
    assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE, "3.1.1 code 3");
    assert!(t.wait_exceeded("connect_rate", before + 2.0) >= before + 2.0);
    for i in 0..6 {
        let (_, ack) = t.connect_b(V5, &format!("b{i}")).await;
        ok(&ack);
    }
}

#[tokio::test]
async fn a_packet_over_the_tenants_maximum_is_announced_then_disconnected_with_0x95() {
    let t = two_tenants();
    t.limit_a(json!({"max_packet_size": 1000})).await;
    let (mut a, ack) = t.connect_a(V5, "a1").await;
    ok(&ack);
    assert_eq!(ack.properties.maximum_packet_size, Some(1000));
    let (mut b, ack) = t.connect_b(V5, "b1").await;
    assert_eq!(
        ack.properties.maximum_packet_size,
        Some(256 * 1024),
        "free plan"
    );
    let big = vec![7u8; 2000];
    a.publish("t", &big, QoS::AtMostOnce, false, None).await;
    assert_eq!(a.expect_closed().await, Some(ReasonCode::PACKET_TOO_LARGE));
    let (mut a3, _) = t.connect_a(V3, "a3").await;
    a3.publish("t", &big, QoS::AtMostOnce, false, None).await;
    assert_eq!(a3.expect_closed().await, None, "3.1.1: closed");
    assert_eq!(t.wait_exceeded("max_packet_size", 2.0), 2.0);
    // B sends the same packet.
    assert_eq!(
        pub1(&mut b, &big, 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
}

#[tokio::test]
async fn publishes_over_the_client_rate_get_0x97_and_3_1_1_is_closed_other_clients_go_on() {
    let t = two_tenants();
    t.limit_a(json!({"client_publish_rate_msgs": 3})).await;
    let (mut a, _) = t.connect_a(V5, "a1").await;
    let mut reasons = Vec::new();
    for id in 1..=6 {
        reasons.push(pub1(&mut a, b"x", id).await);
    }
    let refused = quota_exceeded(&reasons);
    assert!((2..=3).contains(&refused), "{reasons:?}");
    assert_eq!(reasons[0], ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(reasons[5], ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(
        a.publish_acked("t", b"x", QoS::ExactlyOnce, false, 7).await,
        ReasonCode::QUOTA_EXCEEDED,
        "QoS 2: in PUBREC"
    );
    // Another client of A has its own budget; B is not touched.
    let (mut a2, _) = t.connect_a(V5, "a2").await;
    assert_eq!(
        pub1(&mut a2, b"x", 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    let (mut b, _) = t.connect_b(V5, "b1").await;
    for id in 1..=10 {
        assert_eq!(
            pub1(&mut b, b"x", id).await,
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        );
    }
    // 3.1.1 cannot say it: the QoS 1 PUBLISH is not acknowledged, the
    // connection closes.
    let (mut a3, _) = t.connect_a(V3, "a3").await;
    for id in 1..=4 {
        a3.publish("t", b"x", QoS::AtLeastOnce, false, Some(id))
            .await;
    }
    let mut acked = 0;
    while let Some(p) = a3.recv().await {
        assert!(matches!(p, Packet::PubAck(_)), "{p:?}");
        acked += 1;
    }
    assert_eq!(acked, 3, "the burst, then closed");
    assert!(t.wait_exceeded("client_publish_rate_msgs", 4.0) >= 4.0);
}

#[tokio::test]
async fn publishes_over_the_tenant_and_byte_rates_get_0x97_while_another_tenant_publishes() {
    let t = two_tenants();
    t.limit_a(json!({"publish_rate_msgs": 4, "client_publish_rate_bytes": 100_000, "publish_rate_bytes": 1000}))
        .await;
    // Two clients share the tenant's 4 messages per second.
    let (mut a1, _) = t.connect_a(V5, "a1").await;
    let (mut a2, _) = t.connect_a(V5, "a2").await;
    let mut reasons = Vec::new();
    for id in 1..=4 {
        reasons.push(pub1(&mut a1, b"x", id).await);
        reasons.push(pub1(&mut a2, b"x", id).await);
    }
    let refused = quota_exceeded(&reasons);
    assert!((3..=4).contains(&refused), "{reasons:?}");
    assert!(t.wait_exceeded("publish_rate_msgs", 3.0) >= 3.0);
    // Bytes: 1000 per second tenant-wide; a 600-byte payload fits once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let payload = vec![1u8; 600];
    assert_eq!(
        pub1(&mut a1, &payload, 10).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        pub1(&mut a2, &payload, 10).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    assert_eq!(t.wait_exceeded("publish_rate_bytes", 1.0), 1.0);
    let (mut b, _) = t.connect_b(V5, "b1").await;
    for id in 1..=8 {
        assert_eq!(
            pub1(&mut b, &payload, id).await,
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        );
    }
}

#[tokio::test]
async fn publish_bytes_over_the_client_byte_rate_get_0x97() {
    let t = two_tenants();
    t.limit_a(json!({"client_publish_rate_bytes": 1000})).await;
    let (mut a, _) = t.connect_a(V5, "a1").await;
    let payload = vec![1u8; 700];
    assert_eq!(
        pub1(&mut a, &payload, 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(pub1(&mut a, &payload, 2).await, ReasonCode::QUOTA_EXCEEDED);
    // Another client of the same tenant has its own byte budget.
    let (mut a2, _) = t.connect_a(V5, "a2").await;
    assert_eq!(
        pub1(&mut a2, &payload, 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(t.wait_exceeded("client_publish_rate_bytes", 1.0), 1.0);
}

async fn subscribe_many(c: &mut RawClient, packet_id: u16, filters: &[&str]) -> SubAck {
    c.send(Packet::Subscribe(Subscribe {
        packet_id,
        filters: filters
            .iter()
            .map(|f| {
                (
                    (*f).into(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        properties: SubscribeProperties::default(),
    }))
    .await;
    match c.recv().await {
        Some(Packet::SubAck(ack)) => ack,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn subscriptions_over_the_limit_get_suback_0x97_or_3_1_1_0x80_while_another_tenant_subscribes()
 {
    let t = two_tenants();
    t.limit_a(json!({"subscriptions_per_client": 2})).await;
    let granted = ReasonCode(1);
    let (mut a, _) = t.connect_a(V5, "a1").await;
    let ack = subscribe_many(&mut a, 1, &["s/1", "s/2", "s/3"]).await;
    assert_eq!(ack.reasons, [granted, granted, ReasonCode::QUOTA_EXCEEDED]);
    // Replacing a subscription is not one more.
    let ack = subscribe_many(&mut a, 2, &["s/1"]).await;
    assert_eq!(ack.reasons, [granted]);
    let (mut a3, _) = t.connect_a(V3, "a3").await;
    let ack = subscribe_many(&mut a3, 1, &["s/1", "s/2", "s/3"]).await;
    assert_eq!(
        ack.reasons,
        [granted, granted, ReasonCode::UNSPECIFIED_ERROR],
        "3.1.1: 0x80"
    );
    assert_eq!(t.wait_exceeded("subscriptions_per_client", 2.0), 2.0);
    let (mut b, _) = t.connect_b(V5, "b1").await;
    let ack = subscribe_many(&mut b, 1, &["s/1", "s/2", "s/3", "s/4"]).await;
    assert_eq!(ack.reasons, [granted; 4]);
}

#[tokio::test]
async fn a_limit_change_reaches_a_live_connection_within_a_second() {
    let t = two_tenants();
    let (mut a, _) = t.connect_a(V5, "a1").await;
    let granted = ReasonCode(1);
    assert_eq!(subscribe_many(&mut a, 1, &["s/0"]).await.reasons, [granted]);
    set_limits(&t.server, &t.a, &json!({"subscriptions_per_client": 1}));
    let since = Instant::now();
    let mut id = 2;
    loop {
        let filter = format!("s/{id}");
        let ack = subscribe_many(&mut a, id, &[&filter]).await;
        if ack.reasons == [ReasonCode::QUOTA_EXCEEDED] {
            break;
        }
        // Not yet applied: undo, try again.
        a.send(Packet::Unsubscribe(aerie_proto::Unsubscribe {
            packet_id: id,
            filters: vec![filter.as_str().into()],
            properties: Default::default(),
        }))
        .await;
        assert!(matches!(a.recv().await, Some(Packet::UnsubAck(_))));
        assert!(
            since.elapsed() < Duration::from_millis(1500),
            "not applied after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        id += 1;
    }
}

#[tokio::test]
async fn retained_messages_over_the_count_or_bytes_get_puback_0x97_3_1_1_acked_and_dropped() {
    let t = two_tenants();
    t.limit_a(json!({"retained_messages": 2, "retained_bytes": 1000}))
        .await;
    let (mut a, _) = t.connect_a(V5, "a1").await;
    let (mut watcher, _) = t.connect_a(V5, "watch").await;
    watcher.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    for (i, topic) in ["r/1", "r/2"].iter().enumerate() {
        assert!(
            !a.publish_acked(topic, b"v", QoS::AtLeastOnce, true, i as u16 + 1)
                .await
                .is_error()
        );
        let p = watcher.recv_publish().await;
        watcher.ack(&p).await;
    }
    assert_eq!(
        a.publish_acked("r/3", b"v", QoS::AtLeastOnce, true, 3)
            .await,
        ReasonCode::QUOTA_EXCEEDED,
        "a third retained topic"
    );
    assert_eq!(
        a.publish_acked("r/1", &[0u8; 1000], QoS::ExactlyOnce, true, 4)
            .await,
        ReasonCode::QUOTA_EXCEEDED,
        "over the bytes (QoS 2: in PUBREC)"
    );
    // Replacing within the quota still works.
    assert!(
        !a.publish_acked("r/1", b"w", QoS::AtLeastOnce, true, 5)
            .await
            .is_error()
    );
    let p = watcher.recv_publish().await;
    assert_eq!(&p.payload[..], b"w", "the refused ones were not routed");
    watcher.ack(&p).await;
    // 3.1.1: acknowledged as usual, neither stored nor routed.
    let (mut a3, _) = t.connect_a(V3, "a3").await;
    assert_eq!(
        a3.publish_acked("r/4", b"v", QoS::AtLeastOnce, true, 1)
            .await,
        ReasonCode::SUCCESS
    );
    watcher.expect_silence(Duration::from_millis(300)).await;
    let (mut late, _) = t.connect_a(V5, "late").await;
    late.subscribe(1, "r/#", QoS::AtMostOnce).await;
    let mut topics = vec![
        late.recv_publish().await.topic.to_string(),
        late.recv_publish().await.topic.to_string(),
    ];
    topics.sort();
    assert_eq!(topics, ["r/1", "r/2"]);
    late.expect_silence(Duration::from_millis(300)).await;
    assert!(t.wait_exceeded("retained_messages", 2.0) >= 2.0);
    assert_eq!(t.wait_exceeded("retained_bytes", 1.0), 1.0);
    // B retains more than A may.
    let (mut b, _) = t.connect_b(V5, "b1").await;
    for i in 1..=5u16 {
        assert!(
            !b.publish_acked(&format!("r/{i}"), b"v", QoS::AtLeastOnce, true, i)
                .await
                .is_error()
        );
    }
}

#[tokio::test]
async fn session_expiry_is_clamped_to_the_tenants_ceiling_and_announced() {
    let t = two_tenants();
    t.limit_a(json!({"session_expiry_max": 60})).await;
    let props = ConnectProperties {
        session_expiry_interval: Some(3600),
        ..Default::default()
    };
    let (_a, ack) = connect(&t.server, V5, "a1", &t.a_token, props.clone()).await;
    ok(&ack);
    assert_eq!(ack.properties.session_expiry_interval, Some(60));
    let within = ConnectProperties {
        session_expiry_interval: Some(30),
        ..Default::default()
    };
    let (_a2, ack) = connect(&t.server, V5, "a2", &t.a_token, within).await;
    assert_eq!(ack.properties.session_expiry_interval, None, "not changed");
    assert_eq!(t.wait_exceeded("session_expiry_max", 1.0), 1.0);
    let (_b, ack) = connect(&t.server, V5, "b1", &t.b_token, props).await;
    ok(&ack);
    assert_eq!(
        ack.properties.session_expiry_interval, None,
        "B's plan allows an hour"
    );
}

#[tokio::test]
async fn the_inflight_window_is_announced_and_bounds_both_directions() {
    let t = two_tenants();
    t.limit_a(json!({"inflight": 2})).await;
    let (mut a, ack) = t.connect_a(V5, "a1").await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    let (_, ack) = t.connect_b(V5, "b0").await;
    assert_eq!(ack.properties.receive_maximum, Some(32), "free plan");
    // Towards the client: at most 2 unacknowledged deliveries.
    let (mut sub, _) = t.connect_a(V5, "sub").await;
    sub.subscribe(1, "w", QoS::AtLeastOnce).await;
    for id in 1..=4 {
        a.publish_acked("w", b"x", QoS::AtLeastOnce, false, id)
            .await;
    }
    let first = sub.recv_publish().await;
    let _second = sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.ack(&first).await;
    sub.recv_publish().await;
    // From the client: a third QoS 2 PUBLISH before PUBREL is one too many.
    let (mut a3, _) = t.connect_a(V5, "a3").await;
    for id in 1..=3u16 {
        a3.publish("q", b"x", QoS::ExactlyOnce, false, Some(id))
            .await;
    }
    assert_eq!(
        a3.expect_closed().await,
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
    assert_eq!(t.wait_exceeded("inflight", 1.0), 1.0);
    let (mut b, _) = t.connect_b(V5, "b1").await;
    for id in 1..=3u16 {
        b.publish("q", b"x", QoS::ExactlyOnce, false, Some(id))
            .await;
        assert!(matches!(b.recv().await, Some(Packet::PubRec(_))));
    }
}

#[tokio::test]
async fn qos1_publishes_awaiting_their_puback_count_against_receive_maximum() {
    let t = two_tenants();
    t.limit_a(json!({"inflight": 2})).await;
    // A persistent session, offline: each QoS 1 message is made durable for
    // it before its PUBACK goes out.
    let props = ConnectProperties {
        session_expiry_interval: Some(300),
        ..Default::default()
    };
    for (token, id) in [(&t.a_token, "a-sub"), (&t.b_token, "b-sub")] {
        let (mut c, _) = connect(&t.server, V5, id, token, props.clone()).await;
        c.subscribe(1, "q", QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    // Three QoS 1 PUBLISHes in one write: the third arrives while the first
    // two still wait for the store, one more than the announced 2.
    let burst = |version| {
        let mut bytes = bytes::BytesMut::new();
        for id in 1..=3u16 {
            let publish = aerie_e2e::raw::publish_packet("q", b"x", QoS::AtLeastOnce, Some(id));
            aerie_proto::encode(&Packet::Publish(publish), version, &mut bytes).unwrap();
        }
        bytes
    };
    let (mut a, ack) = t.connect_a(V5, "a-pub").await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    a.send_bytes(&burst(V5)).await;
    assert_eq!(
        a.expect_closed().await,
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
    // A client that waits for its PUBACKs is never refused.
    let (mut a2, _) = t.connect_a(V5, "a-pub2").await;
    for id in 1..=5u16 {
        a2.publish_acked("q", b"x", QoS::AtLeastOnce, false, id)
            .await;
    }
    // 3.1.1 has no Receive Maximum: the same burst is acknowledged.
    let (mut old, _) = t.connect_a(V3, "a-v3").await;
    old.send_bytes(&burst(V3)).await;
    for _ in 1..=3 {
        assert!(matches!(old.recv().await, Some(Packet::PubAck(_))));
    }
    // Tenant B (32 by its plan) takes the burst.
    let (mut b, _) = t.connect_b(V5, "b-pub").await;
    b.send_bytes(&burst(V5)).await;
    for _ in 1..=3 {
        assert!(matches!(b.recv().await, Some(Packet::PubAck(_))));
    }
}

#[tokio::test]
async fn an_offline_session_holds_at_most_the_tenants_queued_messages() {
    let t = two_tenants();
    t.limit_a(json!({"queued_messages": 3})).await;
    let props = ConnectProperties {
        session_expiry_interval: Some(300),
        ..Default::default()
    };
    let mut offline = Vec::new();
    for (token, id) in [(&t.a_token, "a-sub"), (&t.b_token, "b-sub")] {
        let (mut c, _) = connect(&t.server, V5, id, token, props.clone()).await;
        c.subscribe(1, "q", QoS::AtLeastOnce).await;
        c.disconnect().await;
        offline.push((token, id));
    }
    let (mut a, _) = t.connect_a(V5, "a-pub").await;
    let (mut b, _) = t.connect_b(V5, "b-pub").await;
    for id in 1..=5u16 {
        let payload = [id as u8];
        a.publish_acked("q", &payload, QoS::AtLeastOnce, false, id)
            .await;
        b.publish_acked("q", &payload, QoS::AtLeastOnce, false, id)
            .await;
    }
    assert_eq!(t.wait_exceeded("queued_messages", 2.0), 2.0);
    for ((token, id), want) in offline.into_iter().zip([3usize, 5]) {
        let mut c = with_password(V5, id, Some(token));
        c.clean_start = false;
        c.properties = props.clone();
        let (mut c, ack) = RawClient::connect_with(t.server.mqtt, c).await;
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..want {
            let p = c.recv_publish().await;
            got.push(p.payload[0]);
            c.ack(&p).await;
        }
        c.expect_silence(Duration::from_millis(300)).await;
        let expected: Vec<u8> = (1..=want as u8).collect();
        assert_eq!(got, expected, "{id}: the oldest, in order");
    }
}

/// Tenant A floods QoS 0 PUBLISHes far over its rates from two connections
/// while tenant B measures QoS 1 round trips of its own: B loses nothing and
/// its p99 stays under 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_slow_another_tenant() {
    let t = two_tenants();
    t.limit_a(json!({"publish_rate_msgs": 100, "client_publish_rate_msgs": 100}))
        .await;
    t.limit(
        &t.b,
        &t.b_token,
        json!({"client_publish_rate_msgs": 10_000, "publish_rate_msgs": 10_000}),
    )
    .await;
    let (mut a_sub, _) = t.connect_a(V5, "a-sub").await;
    a_sub.subscribe(1, "flood/#", QoS::AtMostOnce).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for i in 0..2 {
        let (mut c, ack) = t.connect_a(V5, &format!("flooder-{i}")).await;
        ok(&ack);
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let batch: Vec<u8> = {
                let mut out = bytes::BytesMut::new();
                for _ in 0..100 {
                    let p = Packet::Publish(Publish {
                        dup: false,
                        qos: QoS::AtMostOnce,
                        retain: false,
                        topic: "flood/x".into(),
                        packet_id: None,
                        payload: bytes::Bytes::from_static(&[0u8; 64]),
                        properties: Default::default(),
                    });
                    aerie_proto::encode(&p, V5, &mut out).unwrap();
                }
                out.to_vec()
            };
            // Bounded: at most 200k messages per flooder.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 200_000 {
                c.send_bytes(&batch).await;
                sent += 100;
            }
            sent
        }));
    }
    // A's subscriber drains whatever gets through.
    let drain = tokio::spawn(async move {
        while let Ok(Some(_)) = a_sub.recv_within(Duration::from_secs(1)).await {}
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut b_sub, _) = t.connect_b(V5, "b-sub").await;
    b_sub.subscribe(1, "echo", QoS::AtLeastOnce).await;
    let (mut b_pub, _) = t.connect_b(V5, "b-pub").await;
    let mut latencies = Vec::new();
    for id in 1..=100u16 {
        let start = Instant::now();
        round_trip(&mut b_pub, &mut b_sub, "echo", id).await;
        latencies.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: u64 = futures_util::future::join_all(flooders)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    drain.abort();
    latencies.sort();
    let p99 = latencies[98];
    assert_eq!(latencies.len(), 100, "B lost nothing");
    assert!(p99 < Duration::from_millis(50), "B's p99 {p99:?}");
    let refused = t.exceeded("client_publish_rate_msgs") + t.exceeded("publish_rate_msgs");
    assert!(
        refused > 1000.0,
        "A flooded ({sent} sent) and was refused {refused} times"
    );
    eprintln!(
        "A sent {sent}, refused {refused}; B p50 {:?} p99 {p99:?}",
        latencies[49]
    );
}

/// `POST /v1/tenants/{tid}/messages`: its detail on a 422.
fn http_publish(server: &Server, tenant: &Tenant, body: Value) -> (u16, String) {
    let r = server.api(
        "POST",
        &format!("/v1/tenants/{}/messages", tenant.id),
        Some(&tenant.api_key),
        Some(&body),
    );
    (r.status, r.body)
}

#[tokio::test]
async fn http_publishes_are_held_to_the_tenants_rate_size_and_retained_quota() {
    let t = two_tenants();
    t.limit_a(json!({"publish_rate_msgs": 2, "retained_messages": 1, "max_packet_size": 100}))
        .await;
    // Fresh tenant-wide budget: 2 messages.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = http_publish(
        &t.server,
        &t.a,
        json!({"topic": "r/1", "payload": "v", "retain": true}),
    );
    assert_eq!(status, 200);
    let (status, body) = http_publish(
        &t.server,
        &t.a,
        json!({"topic": "r/2", "payload": "v", "retain": true}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("retained_messages"), "{body}");
    let (status, body) = http_publish(&t.server, &t.a, json!({"topic": "t", "payload": "v"}));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("publish_rate_msgs"), "{body}");
    let (status, body) = http_publish(
        &t.server,
        &t.a,
        json!({"topic": "t", "payload": "x".repeat(200)}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("at most 100"), "{body}");
    // B publishes and retains as usual.
    for i in 0..4 {
        let (status, body) = http_publish(
            &t.server,
            &t.b,
            json!({"topic": format!("r/{i}"), "payload": "v", "retain": true}),
        );
        assert_eq!(status, 200, "{body}");
    }
}
