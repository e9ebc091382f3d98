//! A deleted tenant leaves nothing behind: its persistent sessions, their
//! queued messages and its retained messages are gone from the broker's
//! memory and from the store on disk (a restart brings nothing of it back),
//! while another tenant's are untouched.

use std::time::{Duration, Instant};

use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use serde_json::json;

/// The parked session's CONNECT: persistent, with the tenant's token.
fn parked(token: &str, clean_start: bool) -> aerie_proto::Connect {
    let mut c = with_password(ProtocolVersion::V5, "parked", Some(token));
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Leaves in `tenant` an offline persistent session on `d/#` with three
/// queued QoS 1 messages, and one retained message.
async fn fill(server: &Server, tenant: &Tenant) -> String {
    let (token, _) = mint(server, tenant, json!({}));
    let (mut sub, ack) = RawClient::connect_with(server.mqtt, parked(&token, true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    sub.subscribe(1, "d/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "pub", Some(&token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    for i in 1..=3u16 {
        let reason = publisher
            .publish_acked(
                "d/1",
                format!("q{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                i,
            )
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
    publisher
        .publish_acked("r/1", b"kept", QoS::AtLeastOnce, true, 9)
        .await;
    publisher.disconnect().await;
    token
}

fn wait_metric(server: &Server, name: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = server.metric(name, "");
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} = {got}, want {want} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the broker to hold this many sessions and retained messages.
fn wait_held(server: &Server, sessions: f64, retained: f64) {
    wait_metric(server, "aerie_sessions", sessions, Duration::from_secs(5));
    wait_metric(
        server,
        "aerie_retained_messages",
        retained,
        Duration::from_secs(5),
    );
}

#[tokio::test]
async fn a_deleted_tenant_leaves_no_session_queue_or_retained_message_in_memory_or_on_disk() {
    let mut server = ServerOptions::default().anonymous(false).start();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    fill(&server, &green).await;
    let blue_token = fill(&server, &blue).await;
    wait_held(&server, 2.0, 2.0);

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}", green.id),
            Some(&green.session),
            None,
        )
        .expect(204);
    // Gone from memory within a directory reload or two...
    wait_held(&server, 1.0, 1.0);
    assert_eq!(server.metric("aerie_tenants_removed_total", ""), 1.0);

    // ... and from disk: a restart loads only blue's.
    server.restart_gracefully();
    wait_held(&server, 1.0, 1.0);

    // Blue's session kept everything.
    let (mut sub, ack) = RawClient::connect_with(server.mqtt, parked(&blue_token, false)).await;
    assert!(ack.session_present, "blue's session survived");
    let mut got = Vec::new();
    while let Ok(Some(p)) = sub.recv_within(Duration::from_millis(1500)).await {
        if let Packet::Publish(p) = p {
            sub.ack(&p).await;
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    assert_eq!(got, ["q1", "q2", "q3"]);
    sub.subscribe(2, "r/#", QoS::AtMostOnce).await;
    let retained = sub.recv_publish().await;
    assert_eq!(&retained.payload[..], b"kept");
}
