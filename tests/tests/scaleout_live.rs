//! The control plane's live-state routes in the scale-out shape: a real
//! nats-server (JetStream), a real `aerie control --nats` and two real
//! `aerie gateway`s. `GET …/clients` lists the tenant's clients of both
//! gateways; the kick route closes a client on whichever gateway holds it
//! (0x98 on v5); an HTTP publish reaches subscribers on both gateways at
//! QoS 0 and 1, and a retained one later subscribers and `GET …/retained`;
//! the tenant's publish rate refuses it with 422; another tenant with the
//! same client ids and topics sees none of it.

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::http::{Api, Reply};
use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::raw::assert_alive;
use aerie_e2e::scaleout::{Cluster, Control, Gateway};
use aerie_e2e::tenants::{Tenant, mint, tenant};
use aerie_e2e::v5client::{V3, V5, v3_ws_options, v5_options};
use aerie_proto::{Packet, QoS, ReasonCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::{Value, json};

const SILENCE: Duration = Duration::from_millis(500);

/// A tenant whose limits are `limits` over the free plan's, and a token of
/// it both gateways accept (so both have loaded the tenant).
async fn tenant_on(c: &Cluster, email: &str, limits: Value) -> (Tenant, String) {
    let t = tenant(&c.control, email);
    if limits != json!({}) {
        c.set_limits(&t, limits).await;
    }
    let (token, _) = mint(&c.control, &t, json!({}));
    c.wait_accepted(&token).await;
    (t, token)
}

fn call(c: &Cluster, t: &Tenant, method: &str, path: &str, body: Option<&Value>) -> Reply {
    c.control.api(
        method,
        &format!("/v1/tenants/{}/{path}", t.id),
        Some(&t.api_key),
        body,
    )
}

fn publish(c: &Cluster, t: &Tenant, body: Value) -> Value {
    call(c, t, "POST", "messages", Some(&body)).expect(200)
}

fn client_ids(listed: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Polls the tenant's client list until it is `want` (the gateways' own
/// probes connect and leave); returns the last listing.
fn wait_clients(c: &Cluster, t: &Tenant, want: &[&str]) -> Value {
    let deadline = Instant::now() + aerie_e2e::WAIT;
    loop {
        let listed = call(c, t, "GET", "clients", None).expect(200);
        if client_ids(&listed) == want || Instant::now() > deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn raw(gateway: &Gateway, client_id: &str, token: &str) -> RawClient {
    let (client, reason) = gateway.connect_v5(client_id, token).await;
    assert_eq!(reason, ReasonCode::SUCCESS, "{client_id}");
    client
}

async fn v5_subscribed(gateway: &Gateway, id: &str, token: &str, filter: &str) -> V5 {
    let mut options = v5_options(gateway.mqtt, id);
    options.set_credentials("anyone", token);
    let (mut c, ack) = V5::connect(options).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    c.subscribe_acked(filter).await;
    c
}

async fn v3_ws_subscribed(gateway: &Gateway, id: &str, token: &str, filter: &str) -> V3 {
    let mut options = v3_ws_options(gateway.ws, id);
    options.set_credentials("anyone", token);
    let (mut c, ack) = V3::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    c.subscribe_acked(filter).await;
    c
}

#[tokio::test]
async fn clients_lists_the_tenants_clients_of_both_gateways_and_not_another_tenants_twin() {
    let c = Cluster::start();
    let (green, green_token) = tenant_on(&c, "green@example.com", json!({})).await;
    let (blue, blue_token) = tenant_on(&c, "blue@example.com", json!({})).await;
    let mut on_a = raw(&c.a, "dev-a", &green_token).await;
    on_a.subscribe(1, "cmd/dev-a/#", QoS::AtLeastOnce).await;
    let _on_b = v3_ws_subscribed(&c.b, "dev-b", &green_token, "broadcast").await;
    // Blue's client has green's client id, on the same gateway as green's.
    let _twin = raw(&c.a, "dev-b", &blue_token).await;

    let listed = wait_clients(&c, &green, &["dev-a", "dev-b"]);
    assert_eq!(client_ids(&listed), ["dev-a", "dev-b"], "{listed}");
    let info = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap()
            .clone()
    };
    let (a, b) = (info("dev-a"), info("dev-b"));
    assert_eq!(
        (&a["protocol"], &a["transport"]),
        (&json!("5.0"), &json!("tcp"))
    );
    assert_eq!(a["subscriptions"], json!(["cmd/dev-a/#"]));
    assert_eq!(
        (&b["protocol"], &b["transport"]),
        (&json!("3.1.1"), &json!("ws"))
    );
    assert_eq!(b["subscriptions"], json!(["broadcast"]));
    assert_eq!(client_ids(&wait_clients(&c, &blue, &["dev-b"])), ["dev-b"]);

    // A client that leaves is no longer listed.
    on_a.disconnect().await;
    assert_eq!(client_ids(&wait_clients(&c, &green, &["dev-b"])), ["dev-b"]);
}

#[tokio::test]
async fn the_kick_route_closes_a_client_on_either_gateway_with_0x98_and_404s_an_unknown_id() {
    let c = Cluster::start();
    let (green, green_token) = tenant_on(&c, "green@example.com", json!({})).await;
    let (blue, blue_token) = tenant_on(&c, "blue@example.com", json!({})).await;
    let mut on_a = raw(&c.a, "dev-a", &green_token).await;
    let mut on_b = raw(&c.b, "dev-b", &green_token).await;
    let mut kept = raw(&c.b, "kept", &green_token).await;
    let mut twin = raw(&c.a, "dev-b", &blue_token).await;
    wait_clients(&c, &green, &["dev-a", "dev-b", "kept"]);

    for (id, client) in [("dev-a", &mut on_a), ("dev-b", &mut on_b)] {
        call(&c, &green, "DELETE", &format!("clients/{id}"), None).expect(204);
        let mut disconnect = None;
        loop {
            match client.recv().await {
                Some(Packet::Disconnect(d)) => disconnect = Some(d),
                Some(other) => panic!("{id}: unexpected {other:?}"),
                None => break,
            }
        }
        let d = disconnect.unwrap_or_else(|| panic!("{id}: no DISCONNECT before the close"));
        assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION, "{id}");
        assert_eq!(
            d.properties.reason_string.as_deref(),
            Some("admin_disconnect")
        );
    }
    // Answered once gone: the listing right after no longer has them.
    let listed = call(&c, &green, "GET", "clients", None).expect(200);
    assert_eq!(client_ids(&listed), ["kept"], "{listed}");

    // Unknown, already gone, or another tenant's: 404, and nobody is closed.
    call(&c, &green, "DELETE", "clients/nobody", None).problem(404);
    call(&c, &green, "DELETE", "clients/dev-a", None).problem(404);
    let blue_with_greens_key = c.control.api(
        "DELETE",
        &format!("/v1/tenants/{}/clients/dev-b", blue.id),
        Some(&green.api_key),
        None,
    );
    blue_with_greens_key.problem(404);
    assert_alive(&mut kept).await;
    assert_alive(&mut twin).await;
}

#[tokio::test]
async fn http_publish_reaches_subscribers_on_both_gateways_at_qos_0_and_1_and_no_other_tenant() {
    let c = Cluster::start();
    let (green, green_token) = tenant_on(&c, "green@example.com", json!({})).await;
    let (_blue, blue_token) = tenant_on(&c, "blue@example.com", json!({})).await;
    let mut on_a = v5_subscribed(&c.a, "sub-a", &green_token, "sensors/#").await;
    let mut on_b = v3_ws_subscribed(&c.b, "sub-b", &green_token, "sensors/+/temp").await;
    let mut other = v5_subscribed(&c.b, "sub-a", &blue_token, "#").await;

    for qos in [0u8, 1] {
        let payload = format!("21.5 at qos {qos}");
        let outcome = publish(
            &c,
            &green,
            json!({"topic": "sensors/kitchen/temp", "payload": payload, "qos": qos}),
        );
        // One matching subscription on each gateway.
        assert_eq!(outcome, json!({"matched_subscriptions": 2}));
        let p = on_a.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (&b"sensors/kitchen/temp"[..], payload.as_bytes())
        );
        assert_eq!(p.qos as u8, qos);
        let p = on_b.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            ("sensors/kitchen/temp", payload.as_bytes())
        );
        assert_eq!(p.qos as u8, qos);
    }
    let outcome = publish(
        &c,
        &green,
        json!({"topic": "nobody/listens", "payload": "x"}),
    );
    assert_eq!(outcome, json!({"matched_subscriptions": 0}));
    other.expect_no_publish(SILENCE).await;
}

#[tokio::test]
async fn a_retained_http_publish_reaches_later_subscribers_on_a_gateway_and_is_listed() {
    let c = Cluster::start();
    let (green, green_token) = tenant_on(&c, "green@example.com", json!({})).await;
    let (blue, blue_token) = tenant_on(&c, "blue@example.com", json!({})).await;
    publish(
        &c,
        &green,
        json!({"topic": "status/door", "payload": "closed", "qos": 1, "retain": true}),
    );
    publish(
        &c,
        &green,
        json!({"topic": "status/raw", "payload_base64": STANDARD.encode([0xffu8, 0]), "retain": true}),
    );

    let listed = call(&c, &green, "GET", "retained?filter=status/%23", None).expect(200);
    assert_eq!(
        listed,
        json!([
            {"topic": "status/door", "qos": 1, "payload_base64": STANDARD.encode("closed"), "payload": "closed"},
            {"topic": "status/raw", "qos": 0, "payload_base64": STANDARD.encode([0xffu8, 0])},
        ])
    );
    // A later subscriber on each gateway gets it, flagged retained.
    for gateway in [&c.a, &c.b] {
        let mut late = raw(gateway, "late", &green_token).await;
        late.subscribe(1, "status/door", QoS::AtLeastOnce).await;
        let p = late.recv_publish().await;
        assert_eq!((&*p.topic, &p.payload[..]), ("status/door", &b"closed"[..]));
        assert!(p.retain);
    }

    // The other tenant has none of it.
    assert_eq!(
        call(&c, &blue, "GET", "retained?filter=%23", None).expect(200),
        json!([])
    );
    let mut other = raw(&c.b, "late", &blue_token).await;
    other.subscribe(1, "#", QoS::AtLeastOnce).await;
    other.expect_silence(SILENCE).await;

    // An empty retained payload clears it.
    publish(
        &c,
        &green,
        json!({"topic": "status/door", "payload": "", "retain": true}),
    );
    let listed = call(&c, &green, "GET", "retained?filter=%23", None).expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["topic"], "status/raw");
}

#[tokio::test]
async fn the_tenants_publish_rate_refuses_an_http_publish_with_422() {
    let c = Cluster::start();
    let (green, _token) = tenant_on(&c, "green@example.com", json!({"publish_rate_msgs": 1})).await;
    // Each gateway allows the tenant's rate: with 1 msg/s, a burst refuses
    // once one of them has published one (the limit reaches it with the facts).
    let deadline = Instant::now() + aerie_e2e::WAIT;
    let refused = loop {
        let reply = call(
            &c,
            &green,
            "POST",
            "messages",
            Some(&json!({"topic": "a", "payload": "x"})),
        );
        if reply.status == 422 {
            break reply.problem(422);
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(refused.contains("publish_rate_msgs"), "{refused}");
}

#[tokio::test]
async fn a_retained_http_publish_over_the_tenants_retained_quota_is_refused_with_422() {
    let c = Cluster::start();
    let (green, _token) = tenant_on(&c, "green@example.com", json!({"retained_messages": 1})).await;
    publish(
        &c,
        &green,
        json!({"topic": "status/one", "payload": "kept", "retain": true}),
    );
    // The quota is counted in JetStream: the answer waits for it.
    let refused = call(
        &c,
        &green,
        "POST",
        "messages",
        Some(&json!({"topic": "status/two", "payload": "over", "retain": true})),
    )
    .problem(422);
    assert!(refused.contains("retained_messages"), "{refused}");
    let listed = call(&c, &green, "GET", "retained?filter=%23", None).expect(200);
    assert_eq!(retained_topics(&listed), ["status/one"], "{listed}");
}

fn retained_topics(listed: &Value) -> Vec<&str> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_killed_gateway_is_left_out_of_the_listing_and_publishes_go_through_the_other_at_once() {
    let mut c = Cluster::start();
    let (green, token) = tenant_on(&c, "green@example.com", json!({})).await;
    let _on_a = raw(&c.a, "dev-a", &token).await;
    let mut on_b = v5_subscribed(&c.b, "dev-b", &token, "alerts").await;
    wait_clients(&c, &green, &["dev-a", "dev-b"]);

    // Its node stays in `<prefix>_nodes` for seconds; NATS's "no responders"
    // says at once that it is gone, so nobody waits for it.
    c.a.kill9();
    let since = Instant::now();
    let listed = wait_clients(&c, &green, &["dev-b"]);
    assert_eq!(client_ids(&listed), ["dev-b"], "{listed}");
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "{:?}",
        since.elapsed()
    );
    for i in 0..4 {
        let outcome = publish(
            &c,
            &green,
            json!({"topic": "alerts", "payload": format!("{i}")}),
        );
        assert_eq!(outcome, json!({"matched_subscriptions": 1}));
        assert_eq!(on_b.next_publish().await.payload, format!("{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_gateway_that_does_not_answer_makes_the_listing_a_503_not_a_partial_list() {
    let mut c = Cluster::start();
    let (green, token) = tenant_on(&c, "green@example.com", json!({})).await;
    let _on_a = raw(&c.a, "dev-a", &token).await;
    let _on_b = raw(&c.b, "dev-b", &token).await;
    wait_clients(&c, &green, &["dev-a", "dev-b"]);

    c.b.set_running(false);
    let since = Instant::now();
    let reply = call(&c, &green, "GET", "clients", None);
    let waited = since.elapsed();
    c.b.set_running(true);
    let detail = reply.problem(503);
    assert!(
        detail.contains("1 of 2 gateways did not answer"),
        "{detail}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(
        c.control.metric(
            "aerie_live_requests_total",
            r#"op="clients",outcome="timed_out""#
        ),
        1.0
    );
    // Answering again, it is listed again.
    let listed = wait_clients(&c, &green, &["dev-a", "dev-b"]);
    assert_eq!(client_ids(&listed), ["dev-a", "dev-b"], "{listed}");
}

/// `<prefix>.live.<node>` of each gateway, from the subscriptions the
/// nats-server's monitoring endpoint shows.
fn live_roots(nats: &NatsServer, prefix: &str) -> Vec<String> {
    let reply = aerie_e2e::http::send(nats.monitor, "GET", "/connz?subs=1&limit=1024", &[], "");
    let connz = reply.expect(200);
    let mut roots: Vec<String> = connz["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .flat_map(|c| {
            c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| {
            let s = s.as_str()?;
            let node = s.strip_prefix(&format!("{prefix}.live."))?;
            Some(format!("{prefix}.live.{}", node.strip_suffix(".>")?))
        })
        .collect();
    roots.sort();
    roots
}

/// A short answer: one frame (flag `.`, the last) of JSON.
fn one_frame_answer(reply: &[u8]) -> Value {
    let (flag, json) = reply.split_first().expect("a frame");
    assert_eq!(*flag, b'.', "{}", String::from_utf8_lossy(reply));
    serde_json::from_slice(json).expect("JSON")
}

#[tokio::test]
async fn a_malformed_live_request_is_answered_503_and_counted_by_the_gateway() {
    let c = Cluster::start();
    let nats = NatsServer::shared();
    let (green, _token) = tenant_on(&c, "green@example.com", json!({})).await;
    let roots = live_roots(nats, &c.prefix);
    assert_eq!(roots.len(), 2, "{roots:?}");
    for root in &roots {
        for (op, payload) in [
            ("publish", &b"\x00garbage"[..]),
            ("matching", b"a/+"),
            ("nope", b""),
        ] {
            let reply = nats.request(&format!("{root}.{op}.{}", green.id), payload);
            let answer = one_frame_answer(&reply);
            assert_eq!(answer, json!({"unavailable": "malformed request"}), "{op}");
        }
    }
    for gateway in [&c.a, &c.b] {
        assert_eq!(
            gateway.metric("aerie_live_requests_refused_total", r#"why="malformed""#),
            3.0
        );
    }
    // A well-formed one is answered, for that tenant alone.
    let reply = nats.request(&format!("{}.clients.{}", roots[0], green.id), b"");
    let answer = one_frame_answer(&reply);
    assert_eq!(answer, json!({"ok": []}));
}

#[tokio::test]
async fn with_no_gateway_running_nobody_is_listed_or_kicked_and_a_publish_is_a_503() {
    let nats = NatsServer::shared();
    let control = Control::start(&nats.url(), &unique_prefix(), &[]);
    let t = tenant(&control, "green@example.com");
    let path = |rest: &str| format!("/v1/tenants/{}/{rest}", t.id);
    let key = Some(t.api_key.as_str());
    assert_eq!(
        control.api("GET", &path("clients"), key, None).expect(200),
        json!([])
    );
    control
        .api("DELETE", &path("clients/dev-1"), key, None)
        .problem(404);
    let body = json!({"topic": "a", "payload": "x"});
    let detail = control
        .api("POST", &path("messages"), key, Some(&body))
        .problem(503);
    assert!(detail.contains("no gateway"), "{detail}");
}

#[tokio::test]
async fn a_listing_longer_than_one_nats_message_arrives_whole() {
    let c = Cluster::start();
    let (green, token) = tenant_on(&c, "green@example.com", json!({"connect_rate": 1000})).await;
    // 25 clients, each with 50 filters of 1 KB (within the free plan): a
    // listing of 1.3 MB, past NATS's default max_payload of 1 MiB.
    let filters: Vec<_> = (0..50)
        .map(|i| {
            let filter = format!("{}/{i}", "f".repeat(1000));
            (filter.into(), aerie_proto::SubscriptionOptions::default())
        })
        .collect();
    let ids: Vec<String> = (0..25).map(|n| format!("dev-{n:02}")).collect();
    let mut clients = Vec::new();
    for id in &ids {
        let mut client = raw(&c.a, id, &token).await;
        client
            .send(Packet::Subscribe(aerie_proto::Subscribe {
                packet_id: 1,
                filters: filters.clone(),
                properties: Default::default(),
            }))
            .await;
        match client.recv().await {
            Some(Packet::SubAck(ack)) => assert!(ack.reasons.iter().all(|r| !r.is_error())),
            other => panic!("{id}: {other:?}"),
        }
        clients.push(client);
    }

    let want: Vec<&str> = ids.iter().map(String::as_str).collect();
    let listed = wait_clients(&c, &green, &want);
    assert_eq!(client_ids(&listed), want);
    assert!(listed.to_string().len() > 1024 * 1024);
    for entry in listed.as_array().unwrap() {
        assert_eq!(entry["subscriptions"].as_array().unwrap().len(), 50);
    }
}

#[tokio::test]
async fn with_nats_down_the_listing_is_a_503_not_an_empty_list() {
    let mut nats = NatsServer::start();
    let control = Control::start(&nats.url(), &unique_prefix(), &[]);
    let t = tenant(&control, "green@example.com");
    let path = format!("/v1/tenants/{}/clients", t.id);
    let key = Some(t.api_key.as_str());
    // No gateway has started: nobody to list.
    assert_eq!(control.api("GET", &path, key, None).expect(200), json!([]));

    nats.kill9();
    let since = Instant::now();
    let detail = control.api("GET", &path, key, None).problem(503);
    assert!(detail.contains("NATS"), "{detail}");
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "{:?}",
        since.elapsed()
    );
}
