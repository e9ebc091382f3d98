//! The REST routes that act on the live broker, through the real
//! `aerie serve`: publishing over HTTP to MQTT subscribers (QoS 0/1, text and
//! base64 payloads, retain), the retained list, live clients and
//! disconnecting them, and usage metered by the gateway — each within one
//! tenant, never reaching another.

use std::time::{Duration, Instant};

use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions, ws};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Usage is written every second in these tests (the default is 10 s).
fn server() -> Server {
    ServerOptions::default()
        .anonymous(false)
        .args(&["--usage-flush-interval", "1"])
        .start()
}

async fn connect(server: &Server, t: &Tenant, version: ProtocolVersion, id: &str) -> RawClient {
    let (token, _) = mint(server, t, json!({}));
    let (c, ack) =
        RawClient::connect_with(server.mqtt, with_password(version, id, Some(&token))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{id}: {ack:?}");
    c
}

/// A client over MQTT/WebSocket (`ws://…/mqtt`, subprotocol `mqtt`).
async fn connect_ws(server: &Server, t: &Tenant, version: ProtocolVersion, id: &str) -> RawClient {
    let (token, _) = mint(server, t, json!({}));
    let (socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("WebSocket");
    let (c, ack) = RawClient::connect_over(
        ws::byte_stream(socket),
        with_password(version, id, Some(&token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{id}: {ack:?}");
    c
}

async fn subscribed(mut c: RawClient, filter: &str, qos: QoS) -> RawClient {
    let ack = c.subscribe(1, filter, qos).await;
    assert!(!ack.reasons[0].is_error(), "SUBACK {ack:?}");
    c
}

fn publish(server: &Server, t: &Tenant, body: Value) -> Value {
    server
        .api(
            "POST",
            &format!("/v1/tenants/{}/messages", t.id),
            Some(&t.api_key),
            Some(&body),
        )
        .expect(200)
}

fn get(server: &Server, t: &Tenant, path: &str) -> Value {
    server
        .api(
            "GET",
            &format!("/v1/tenants/{}/{path}", t.id),
            Some(&t.api_key),
            None,
        )
        .expect(200)
}

const SILENCE: Duration = Duration::from_millis(500);

#[tokio::test]
async fn http_publish_reaches_v5_and_v311_subscribers_of_its_tenant_only() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let mut v5 = subscribed(
        connect(&server, &green, ProtocolVersion::V5, "v5-sub").await,
        "sensors/#",
        QoS::AtLeastOnce,
    )
    .await;
    let mut v3 = subscribed(
        connect(&server, &green, ProtocolVersion::V311, "v3-sub").await,
        "sensors/+/temp",
        QoS::AtLeastOnce,
    )
    .await;
    let mut other = subscribed(
        connect(&server, &blue, ProtocolVersion::V5, "v5-sub").await,
        "#",
        QoS::AtLeastOnce,
    )
    .await;

    // QoS 0, text payload.
    let out = publish(
        &server,
        &green,
        json!({"topic": "sensors/kitchen/temp", "payload": "21.5"}),
    );
    assert_eq!(out, json!({"matched_subscriptions": 2}));
    for c in [&mut v5, &mut v3] {
        let p = c.recv_publish().await;
        assert_eq!(&*p.topic, "sensors/kitchen/temp");
        assert_eq!(&p.payload[..], b"21.5");
        assert_eq!((p.qos, p.retain), (QoS::AtMostOnce, false));
    }

    // QoS 1, binary payload as base64.
    let bytes = [0u8, 255, 1, 128, b'\n'];
    let out = publish(
        &server,
        &green,
        json!({"topic": "sensors/hall/temp", "payload_base64": STANDARD.encode(bytes), "qos": 1}),
    );
    assert_eq!(out["matched_subscriptions"], 2);
    for c in [&mut v5, &mut v3] {
        let p = c.recv_publish().await;
        assert_eq!(&*p.topic, "sensors/hall/temp");
        assert_eq!(&p.payload[..], &bytes);
        assert_eq!(p.qos, QoS::AtLeastOnce);
        c.ack(&p).await;
    }

    // Only the v5 filter matches this one; nobody in the other tenant sees any.
    let out = publish(
        &server,
        &green,
        json!({"topic": "sensors/door", "payload": "open", "qos": 1}),
    );
    assert_eq!(out["matched_subscriptions"], 1);
    assert_eq!(&v5.recv_publish().await.payload[..], b"open");
    v3.expect_silence(SILENCE).await;
    other.expect_silence(SILENCE).await;

    // No subscriber: still published, nothing matched.
    let out = publish(
        &server,
        &green,
        json!({"topic": "nobody/here", "payload": "x"}),
    );
    assert_eq!(out["matched_subscriptions"], 0);
    // Blue's own publish reaches blue's subscriber, and only it.
    let out = publish(
        &server,
        &blue,
        json!({"topic": "sensors/door", "payload": "blue"}),
    );
    assert_eq!(out["matched_subscriptions"], 1);
    assert_eq!(&other.recv_publish().await.payload[..], b"blue");
    v5.expect_silence(SILENCE).await;
    // Green's key cannot publish into blue's namespace.
    server
        .api(
            "POST",
            &format!("/v1/tenants/{}/messages", blue.id),
            Some(&green.api_key),
            Some(&json!({"topic": "sensors/x", "payload": "x"})),
        )
        .problem(404);
    other.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn http_publish_rejects_what_mqtt_would_refuse() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let path = format!("/v1/tenants/{}/messages", green.id);
    for body in [
        json!({"topic": "a/+", "payload": "x"}),
        json!({"topic": "$SYS/x", "payload": "x"}),
        json!({"topic": "a", "payload": "x", "qos": 2}),
        json!({"topic": "a", "payload": "x", "payload_base64": "eA=="}),
        json!({"topic": "a", "payload_base64": "not base64!"}),
    ] {
        let detail = server
            .api("POST", &path, Some(&green.api_key), Some(&body))
            .problem(422);
        assert!(!detail.is_empty(), "{body}");
    }
}

#[tokio::test]
async fn http_retained_message_reaches_later_subscribers_and_is_listed() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    publish(
        &server,
        &green,
        json!({"topic": "status/door", "payload": "closed", "qos": 1, "retain": true}),
    );
    publish(
        &server,
        &green,
        json!({"topic": "status/raw", "payload_base64": STANDARD.encode([0xffu8, 0]), "retain": true}),
    );

    let listed = get(&server, &green, "retained?filter=status/%23");
    assert_eq!(
        listed,
        json!([
            {"topic": "status/door", "qos": 1, "payload_base64": STANDARD.encode("closed"), "payload": "closed"},
            {"topic": "status/raw", "qos": 0, "payload_base64": STANDARD.encode([0xffu8, 0])},
        ])
    );
    assert_eq!(
        get(&server, &green, "retained?filter=status/door")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(get(&server, &green, "retained?filter=other/%23"), json!([]));

    // A later subscriber (3.1.1 here) gets it, flagged retained.
    let mut late = connect(&server, &green, ProtocolVersion::V311, "late").await;
    late.subscribe(1, "status/door", QoS::AtLeastOnce).await;
    let p = late.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("status/door", &b"closed"[..]));
    assert!(p.retain);

    // The other tenant has none of it.
    assert_eq!(get(&server, &blue, "retained?filter=%23"), json!([]));
    let mut other = connect(&server, &blue, ProtocolVersion::V5, "late").await;
    other.subscribe(1, "#", QoS::AtLeastOnce).await;
    other.expect_silence(SILENCE).await;

    // An empty retained payload clears it.
    publish(
        &server,
        &green,
        json!({"topic": "status/door", "payload": "", "retain": true}),
    );
    let listed = get(&server, &green, "retained?filter=%23");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["topic"], "status/raw");
}

#[tokio::test]
async fn http_qos1_publish_to_an_offline_persistent_session_survives_a_crash() {
    let mut server = server();
    let green = tenant(&server, "green@example.com");
    let (token, _) = mint(&server, &green, json!({}));
    let persistent = |clean| {
        let mut c = with_password(ProtocolVersion::V5, "keeper", Some(&token));
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let (mut c, _) = RawClient::connect_with(server.mqtt, persistent(true)).await;
    c.subscribe(1, "jobs/#", QoS::AtLeastOnce).await;
    c.disconnect().await;

    // 200 means durable: a SIGKILL right after the answer loses nothing.
    publish(
        &server,
        &green,
        json!({"topic": "jobs/1", "payload": "build", "qos": 1}),
    );
    server.restart();
    let (mut c, ack) = RawClient::connect_with(server.mqtt, persistent(false)).await;
    assert!(ack.session_present, "{ack:?}");
    let p = c.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("jobs/1", &b"build"[..]));
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

fn client_ids(listed: &Value) -> Vec<&str> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect()
}

/// Polls the tenant's client list until it is `want` (by client id).
fn wait_clients(server: &Server, t: &Tenant, want: &[&str]) -> Value {
    let deadline = Instant::now() + aerie_e2e::WAIT;
    loop {
        let listed = get(server, t, "clients");
        if client_ids(&listed) == want || Instant::now() > deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn clients_lists_exactly_the_live_clients_of_the_tenant() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    assert_eq!(get(&server, &green, "clients"), json!([]));
    let before = time_now();
    let mut a = connect(&server, &green, ProtocolVersion::V5, "dev-a").await;
    a.subscribe(1, "cmd/dev-a/#", QoS::AtLeastOnce).await;
    a.subscribe(2, "broadcast", QoS::AtMostOnce).await;
    let _b = connect_ws(&server, &green, ProtocolVersion::V311, "dev-b").await;
    let _c = connect(&server, &blue, ProtocolVersion::V311, "dev-c").await;

    let listed = get(&server, &green, "clients");
    assert_eq!(client_ids(&listed), ["dev-a", "dev-b"], "{listed}");
    let (a_info, b_info) = (&listed[0], &listed[1]);
    assert_eq!(a_info["protocol"], "5.0");
    assert_eq!(a_info["transport"], "tcp");
    let mut subs: Vec<&str> = a_info["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    subs.sort();
    assert_eq!(subs, ["broadcast", "cmd/dev-a/#"]);
    assert_eq!(b_info["protocol"], "3.1.1");
    assert_eq!(b_info["transport"], "ws");
    assert_eq!(b_info["subscriptions"], json!([]));
    for info in [a_info, b_info] {
        let at = info["connected_at"].as_str().unwrap();
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("connected_at {at}: {e}"));
        assert!(at >= before - time::Duration::seconds(1), "{at} {before}");
        assert!(at <= time_now() + time::Duration::seconds(1), "{at}");
    }
    assert_eq!(client_ids(&get(&server, &blue, "clients")), ["dev-c"]);

    // A client that leaves is no longer listed.
    a.disconnect().await;
    let listed = wait_clients(&server, &green, &["dev-b"]);
    assert_eq!(client_ids(&listed), ["dev-b"], "{listed}");
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[tokio::test]
async fn deleting_a_client_closes_it_and_only_it() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let mut v5 = connect(&server, &green, ProtocolVersion::V5, "dev-5").await;
    let mut v3 = connect(&server, &green, ProtocolVersion::V311, "dev-3").await;
    let mut kept = connect(&server, &green, ProtocolVersion::V5, "kept").await;
    let mut blue_twin = connect(&server, &blue, ProtocolVersion::V5, "dev-5").await;
    let delete = |t: &Tenant, key: &str, id: &str| {
        server.api(
            "DELETE",
            &format!("/v1/tenants/{}/clients/{id}", t.id),
            Some(key),
            None,
        )
    };

    delete(&green, &green.api_key, "dev-5").expect(204);
    let mut disconnect = None;
    loop {
        match v5.recv().await {
            Some(Packet::Disconnect(d)) => disconnect = Some(d),
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    let d = disconnect.expect("a v5 DISCONNECT before the close");
    assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION);
    assert_eq!(
        d.properties.reason_string.as_deref(),
        Some("admin_disconnect")
    );
    // Answered once gone: the list no longer has it.
    assert_eq!(
        client_ids(&get(&server, &green, "clients")),
        ["dev-3", "kept"]
    );

    delete(&green, &green.api_key, "dev-3").expect(204);
    assert_eq!(v3.expect_closed().await, None, "3.1.1 gets no DISCONNECT");

    // Unknown, already gone, or another tenant's: 404, and nobody is closed.
    delete(&green, &green.api_key, "nobody").problem(404);
    delete(&green, &green.api_key, "dev-3").problem(404);
    delete(&blue, &green.api_key, "dev-5").problem(404);
    for c in [&mut kept, &mut blue_twin] {
        c.send(Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
    }
    assert_eq!(client_ids(&get(&server, &green, "clients")), ["kept"]);
    assert_eq!(client_ids(&get(&server, &blue, "clients")), ["dev-5"]);
}

/// Polls the tenant's usage totals until `done` says they are complete
/// (usage is written every second); returns the last report.
fn wait_usage(server: &Server, t: &Tenant, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let usage = get(server, t, "usage");
        if done(&usage["totals"]) || Instant::now() > deadline {
            return usage;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn usage_counts_exactly_the_messages_and_payload_bytes_sent_and_received() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let mut s5 = subscribed(
        connect(&server, &green, ProtocolVersion::V5, "sub-5").await,
        "m/#",
        QoS::AtLeastOnce,
    )
    .await;
    let mut s3 = subscribed(
        connect_ws(&server, &green, ProtocolVersion::V311, "sub-3").await,
        "m/+",
        QoS::AtMostOnce,
    )
    .await;
    let mut publisher = connect(&server, &green, ProtocolVersion::V311, "pub").await;

    // Five MQTT publishes of 10, 20, … 50 bytes (QoS 0 and 1), one HTTP
    // publish of 7 bytes, and one to a topic nobody subscribed to (3 bytes).
    let sizes = [10usize, 20, 30, 40, 50];
    for (i, n) in sizes.iter().enumerate() {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let reason = publisher
            .publish_acked(&format!("m/{i}"), &vec![b'x'; *n], qos, false, i as u16 + 1)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
    publish(
        &server,
        &green,
        json!({"topic": "m/http", "payload": "seven!!"}),
    );
    publisher
        .publish_acked("nobody/listens", b"abc", QoS::AtMostOnce, false, 0)
        .await;
    for c in [&mut s5, &mut s3] {
        let mut got = Vec::new();
        for _ in 0..6 {
            let p = c.recv_publish().await;
            if p.qos != QoS::AtMostOnce {
                c.ack(&p).await;
            }
            got.push(p.payload.len());
        }
        assert_eq!(got, [10, 20, 30, 40, 50, 7]);
        c.expect_silence(Duration::from_millis(200)).await;
    }

    let sent: i64 = 150 + 7 + 3;
    let want = json!({
        "messages_in": 7,
        "bytes_in": sent,
        "messages_out": 12,
        "bytes_out": 2 * 157,
    });
    let complete = |t: &Value| {
        t["messages_out"] == want["messages_out"] && t["connection_minutes"].as_f64() > Some(0.0)
    };
    let usage = wait_usage(&server, &green, complete);
    let totals = &usage["totals"];
    for key in ["messages_in", "bytes_in", "messages_out", "bytes_out"] {
        assert_eq!(totals[key], want[key], "{key}: {usage}");
    }
    assert!(
        totals["connection_minutes"].as_f64().unwrap() > 0.0,
        "{usage}"
    );
    let hours = usage["hours"].as_array().unwrap();
    assert!(!hours.is_empty() && hours.len() <= 2, "{usage}");

    // Later flushes add connection time only: nothing is counted twice.
    std::thread::sleep(Duration::from_millis(2500));
    let later = get(&server, &green, "usage");
    for key in ["messages_in", "bytes_in", "messages_out", "bytes_out"] {
        assert_eq!(later["totals"][key], want[key], "{key}: {later}");
    }
    assert!(
        later["totals"]["connection_minutes"].as_f64() >= totals["connection_minutes"].as_f64(),
        "{later}"
    );

    // The other tenant did nothing.
    let theirs = get(&server, &blue, "usage");
    assert_eq!(theirs["hours"], json!([]), "{theirs}");
    assert_eq!(theirs["totals"]["messages_in"], 0);
}

#[tokio::test]
async fn usage_still_unwritten_is_written_on_shutdown() {
    // A flush interval far beyond the test: only the shutdown flush writes.
    let mut server = ServerOptions::default()
        .anonymous(false)
        .args(&["--usage-flush-interval", "3600"])
        .start();
    let green = tenant(&server, "green@example.com");
    let mut sub = subscribed(
        connect(&server, &green, ProtocolVersion::V5, "sub").await,
        "t",
        QoS::AtMostOnce,
    )
    .await;
    publish(&server, &green, json!({"topic": "t", "payload": "12345"}));
    assert_eq!(&sub.recv_publish().await.payload[..], b"12345");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&server, &green, "usage")["hours"], json!([]));

    server.restart_gracefully();
    let totals = get(&server, &green, "usage")["totals"].clone();
    assert_eq!(
        (
            &totals["messages_in"],
            &totals["bytes_in"],
            &totals["messages_out"],
            &totals["bytes_out"]
        ),
        (&json!(1), &json!(5), &json!(1), &json!(5)),
        "{totals}"
    );
    assert!(
        totals["connection_minutes"].as_f64() > Some(0.0),
        "{totals}"
    );
}
