//! A tenant's rates across gateways, with a real nats-server (JetStream), a
//! real `aerie control --nats` and two real `aerie gateway`s: publishers on
//! both gateways together get no more of the tenant's publish rate than
//! the plan allows (each gateway enforces its part, by its share of the
//! tenant's connections), and neither is starved; the same for CONNECTs
//! and the connect rate (one part per live gateway).

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::scaleout::{Cluster, Gateway};
use aerie_e2e::tenants::Tenant;
use aerie_proto::{QoS, ReasonCode};
use serde_json::json;

/// How long the clients push against the rates.
const PUSH: Duration = Duration::from_secs(3);
/// How far over the plan the cluster may go in these tests: shares are
/// rounded up to whole units (ARCHITECTURE.md, services/cluster).
const TOLERANCE: f64 = 0.2;

/// A tenant with its limits lifted past the free plan's but `limits`, and
/// a token both gateways accept.
async fn tenant_with(c: &Cluster, email: &str, limits: serde_json::Value) -> (Tenant, String) {
    c.lifted_tenant(email, limits).await
}

async fn connected(gateway: &Gateway, client_id: &str, token: &str) -> RawClient {
    let (client, reason) = gateway.connect_v5(client_id, token).await;
    assert_eq!(reason, ReasonCode::SUCCESS, "{client_id}");
    client
}

/// Waits (2 s at most) until both gateways have rebalanced the tenant's
/// rates since `before` (their share changes); carries on regardless, so the
/// counts below say what a client gets.
async fn rebalanced(c: &Cluster, before: [f64; 2]) {
    let changes = |g: &Gateway| g.metric("aerie_cluster_rate_share_changes_total", "");
    let deadline = Instant::now() + Duration::from_secs(2);
    while (changes(&c.a) <= before[0] || changes(&c.b) <= before[1]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn share_changes(c: &Cluster) -> [f64; 2] {
    [&c.a, &c.b].map(|g| g.metric("aerie_cluster_rate_share_changes_total", ""))
}

/// Publishes QoS 1 as fast as PUBACKs come back for `PUSH`; how many were
/// accepted (refusals are PUBACK 0x97).
async fn publish_flat_out(client: RawClient) -> u32 {
    publish_flat_out_keeping(client).await.1
}

#[tokio::test]
async fn publishers_on_both_gateways_together_get_the_tenant_s_publish_rate_not_twice_it() {
    const RATE: u32 = 40;
    let c = Cluster::start();
    let (_t, token) =
        tenant_with(&c, "rates@example.com", json!({"publish_rate_msgs": RATE})).await;
    let before = share_changes(&c);
    let on_a = connected(&c.a, "pub-a", &token).await;
    let on_b = connected(&c.b, "pub-b", &token).await;
    rebalanced(&c, before).await;

    let (a, b) = tokio::join!(publish_flat_out(on_a), publish_flat_out(on_b));
    let total = f64::from(a + b);
    // A GCRA lets one second's worth through at once, then the rate.
    let plan = f64::from(RATE) * (PUSH.as_secs_f64() + 1.0);
    eprintln!("accepted {a} on A and {b} on B in {PUSH:?}; the plan allows {plan}");
    assert!(
        total <= plan * (1.0 + TOLERANCE),
        "{total} accepted across both gateways, the plan allows {plan}"
    );
    // Each gateway's part is half: neither publisher is starved.
    for (gateway, n) in [("A", a), ("B", b)] {
        assert!(
            f64::from(n) >= plan / 2.0 * 0.6,
            "only {n} accepted on {gateway}"
        );
    }
}

#[tokio::test]
async fn a_publisher_gets_the_whole_publish_rate_once_the_publisher_on_the_other_gateway_leaves() {
    const RATE: u32 = 40;
    let c = Cluster::start();
    let (_t, token) =
        tenant_with(&c, "alone@example.com", json!({"publish_rate_msgs": RATE})).await;
    let before = share_changes(&c);
    let on_a = connected(&c.a, "pub-a", &token).await;
    let on_b = connected(&c.b, "pub-b", &token).await;
    rebalanced(&c, before).await;
    let plan = f64::from(RATE) * (PUSH.as_secs_f64() + 1.0);

    // Both publish: half each.
    let ((on_a, shared), (on_b, _)) = tokio::join!(
        publish_flat_out_keeping(on_a),
        publish_flat_out_keeping(on_b)
    );
    eprintln!("accepted {shared} on A while B published too; the plan allows {plan}");
    assert!(
        f64::from(shared) <= plan / 2.0 * (1.0 + TOLERANCE),
        "{shared}"
    );

    // B's publisher leaves: A's takes the whole rate.
    let before = share_changes(&c);
    on_b.disconnect().await;
    rebalanced(&c, before).await;
    // The pause refills A's burst to its new size.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, alone) = publish_flat_out_keeping(on_a).await;
    eprintln!("accepted {alone} alone; the plan allows {plan}");
    assert!(
        f64::from(alone) >= plan * 0.8,
        "only {alone} accepted alone"
    );
    assert!(f64::from(alone) <= plan * (1.0 + TOLERANCE), "{alone}");
}

#[tokio::test]
async fn a_publisher_gets_the_whole_publish_rate_though_most_connections_are_on_the_other_gateway()
{
    const RATE: u32 = 40;
    let c = Cluster::start();
    let (_t, token) = tenant_with(
        &c,
        "backend@example.com",
        json!({"publish_rate_msgs": RATE}),
    )
    .await;
    // A backend publishing on A to devices connected to B.
    let backend = connected(&c.a, "backend", &token).await;
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(connected(&c.b, &format!("device-{i}"), &token).await);
    }
    // Its demand reaches the counts within a couple of seconds.
    let (backend, warming) = publish_flat_out_keeping(backend).await;
    let (_, steady) = publish_flat_out_keeping(backend).await;
    let pace = f64::from(RATE) * PUSH.as_secs_f64();
    eprintln!(
        "accepted {warming} while the demand travelled, then {steady}; the plan's pace is {pace}"
    );
    assert!(
        f64::from(steady) >= pace * 0.8,
        "only {steady} accepted: the rate stays with the connections"
    );
    assert!(
        f64::from(steady) <= pace * (1.0 + TOLERANCE) + f64::from(RATE),
        "{steady}"
    );
}

#[tokio::test]
async fn a_killed_gateway_s_part_of_the_publish_rate_goes_back_to_the_live_one() {
    const RATE: u32 = 40;
    let mut c = Cluster::start();
    let (_t, token) =
        tenant_with(&c, "killed@example.com", json!({"publish_rate_msgs": RATE})).await;
    let on_a = connected(&c.a, "pub-a", &token).await;
    let on_b = connected(&c.b, "pub-b", &token).await;
    // Both publish long enough for both demands to be written.
    let ((on_a, _), (_on_b, _)) = tokio::join!(
        publish_flat_out_keeping(on_a),
        publish_flat_out_keeping(on_b)
    );
    c.b.kill9();
    // B's count says nothing once its heartbeat expired (8 s) and A's
    // next look at the dead (2 s) dropped it: A alone is then whole.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (_, alone) = publish_flat_out_keeping(on_a).await;
    let plan = f64::from(RATE) * (PUSH.as_secs_f64() + 1.0);
    eprintln!("accepted {alone} after B was killed; the plan allows {plan}");
    assert!(
        f64::from(alone) >= plan * 0.8,
        "only {alone} accepted: the killed gateway still holds its part"
    );
}

/// As [`publish_flat_out`], and the client back.
async fn publish_flat_out_keeping(mut client: RawClient) -> (RawClient, u32) {
    let since = Instant::now();
    let (mut accepted, mut packet_id) = (0, 0u16);
    while since.elapsed() < PUSH {
        packet_id = packet_id % 60_000 + 1;
        match client
            .publish_acked("load", b"x", QoS::AtLeastOnce, false, packet_id)
            .await
        {
            ReasonCode::SUCCESS => accepted += 1,
            reason => assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED),
        }
    }
    (client, accepted)
}

/// Connects and disconnects as fast as CONNACKs come back for `PUSH`; how
/// many were accepted (refusals are CONNACK 0x9F).
async fn connect_flat_out(gateway: &Gateway, client_id: &str, token: &str) -> u32 {
    let since = Instant::now();
    let mut accepted = 0;
    while since.elapsed() < PUSH {
        let (client, reason) = gateway.connect_v5(client_id, token).await;
        match reason {
            ReasonCode::SUCCESS => {
                accepted += 1;
                client.disconnect().await;
            }
            reason => assert_eq!(reason, ReasonCode::CONNECTION_RATE_EXCEEDED),
        }
    }
    accepted
}

#[tokio::test]
async fn connects_on_both_gateways_together_get_the_tenant_s_connect_rate_not_twice_it() {
    const RATE: u32 = 10;
    let c = Cluster::start();
    let (_t, token) = tenant_with(&c, "churn@example.com", json!({"connect_rate": RATE})).await;
    // Each gateway takes one live gateway's part: wait until both count two.
    let deadline = Instant::now() + Duration::from_secs(5);
    while [&c.a, &c.b].map(|g| g.metric("aerie_cluster_nodes_alive", "")) != [2.0, 2.0] {
        assert!(
            Instant::now() < deadline,
            "the gateways do not see each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (a, b) = tokio::join!(
        connect_flat_out(&c.a, "churn-a", &token),
        connect_flat_out(&c.b, "churn-b", &token)
    );
    let total = f64::from(a + b);
    let plan = f64::from(RATE) * (PUSH.as_secs_f64() + 1.0);
    eprintln!("accepted {a} CONNECTs on A and {b} on B in {PUSH:?}; the plan allows {plan}");
    assert!(
        total <= plan * (1.0 + TOLERANCE),
        "{total} CONNECTs accepted across both gateways, the plan allows {plan}"
    );
    for (gateway, n) in [("A", a), ("B", b)] {
        assert!(
            f64::from(n) >= plan / 2.0 * 0.7,
            "only {n} accepted on {gateway}"
        );
    }
}
