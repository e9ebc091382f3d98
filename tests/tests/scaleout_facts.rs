//! The control plane's facts reaching `aerie gateway` through NATS KV, with
//! a real nats-server (JetStream), a real `aerie control --nats` on SQLite
//! and a real `aerie gateway`: tokens minted over REST connect to the
//! gateway; a revocation, a suspension and a limit change reach it within
//! 1.5 s of the REST answer; a tenant issuer's JWKS URL is fetched by the
//! control plane for the gateway; `/readyz` follows NATS and the facts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aerie_e2e::RawClient;
use aerie_e2e::http::Api;
use aerie_e2e::idp::{IdpKey, jwks_server};
use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::raw::{assert_alive, closed_within, reason_string};
use aerie_e2e::scaleout::{Control, Gateway};
use aerie_e2e::server::free_addr;
use aerie_e2e::tenants::{Tenant, mint, revoke, tenant};
use aerie_e2e::v5client::{V5, v5_options};
use aerie_proto::ReasonCode;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::json;

/// What the issue promises: from the REST answer to every gateway.
const WITHIN: Duration = Duration::from_millis(1500);

/// A control plane and a ready gateway on the shared nats-server, apart
/// from other tests by their bucket prefix.
fn control_and_gateway(control_flags: &[&str]) -> (Control, Gateway) {
    let (control, gateway, _) = control_and_gateway_with_prefix(control_flags);
    (control, gateway)
}

/// As [`control_and_gateway`], and their bucket prefix.
fn control_and_gateway_with_prefix(control_flags: &[&str]) -> (Control, Gateway, String) {
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let control = Control::start(&nats.url(), &prefix, control_flags);
    let mut gateway = Gateway::start(&nats.url(), &prefix);
    gateway.wait_ready();
    (control, gateway, prefix)
}

async fn connect(gateway: &Gateway, client_id: &str, token: &str) -> (RawClient, ReasonCode) {
    gateway.connect_v5(client_id, token).await
}

/// CONNECTs with `token` until accepted (the facts it needs are on their
/// way), at most `within`; returns how long that took.
async fn connects_within(gateway: &Gateway, token: &str, within: Duration) -> Duration {
    let since = Instant::now();
    loop {
        let (_c, reason) = connect(gateway, "dev", token).await;
        if reason == ReasonCode::SUCCESS {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "the token is still refused ({reason:?}) after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_token_minted_over_rest_connects_to_the_gateway_and_its_revocation_disconnects_it_within_1_5_s()
 {
    let (control, gateway) = control_and_gateway(&[]);
    let green = tenant(&control, "green@example.com");
    let (token, jti) = mint(&control, &green, json!({}));

    // A real client: it connects and its messages go round through the gateway.
    let mut options = v5_options(gateway.mqtt, "rumqttc");
    options.set_credentials("anyone", token.clone());
    let (mut client, ack) = V5::connect(options).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    client
        .client
        .subscribe("t", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (mut raw, reason) = connect(&gateway, "raw", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // The SUBACK may still be on its way: publish until the subscriber has one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        raw.publish("t", b"hello", aerie_proto::QoS::AtMostOnce, false, None)
            .await;
        match tokio::time::timeout(Duration::from_millis(200), client.next_publish()).await {
            Ok(p) => break p,
            Err(_) => assert!(Instant::now() < deadline, "no message through the gateway"),
        }
    };
    assert_eq!(&got.payload[..], b"hello");

    revoke(&control, &green, &jti);
    let (d, took) = closed_within(&mut raw, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
    assert_eq!(reason_string(&d).as_deref(), Some("token_revoked"));
    eprintln!("revocation reached the gateway's client in {took:?}");
    // The rumqttc client's connection ends too (its event loop stops).
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.events.recv()).await {
            Ok(None) | Ok(Some(p5::Packet::Disconnect(_))) => break,
            Ok(Some(_)) => {}
            Err(_) => {
                panic!("the rumqttc client was still connected {WITHIN:?} after the revocation")
            }
        }
    }
    let (_, reason) = connect(&gateway, "again", &token).await;
    assert_eq!(reason, ReasonCode::NOT_AUTHORIZED);
}

#[tokio::test]
async fn suspending_a_tenant_disconnects_it_on_the_gateway_within_1_5_s_and_refuses_its_connects() {
    let (control, gateway) = control_and_gateway(&[]);
    let green = tenant(&control, "green@example.com");
    let blue = tenant(&control, "blue@example.com");
    let (green_token, _) = mint(&control, &green, json!({}));
    let (blue_token, _) = mint(&control, &blue, json!({}));
    let (mut g, reason) = connect(&gateway, "dev", &green_token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (mut b, reason) = connect(&gateway, "dev", &blue_token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    control
        .admin(
            "POST",
            &format!("/v1/admin/tenants/{}/suspend", green.id),
            None,
        )
        .expect(200);
    let (d, took) = closed_within(&mut g, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::ADMINISTRATIVE_ACTION)
    );
    assert_eq!(reason_string(&d).as_deref(), Some("tenant_suspended"));
    eprintln!("suspension reached the gateway's client in {took:?}");
    let (_, reason) = connect(&gateway, "dev-2", &green_token).await;
    assert_eq!(reason, ReasonCode::NOT_AUTHORIZED);
    // The other tenant is untouched.
    assert_alive(&mut b).await;
}

#[tokio::test]
async fn a_limit_change_over_the_admin_api_applies_on_the_gateway_within_1_5_s() {
    let (control, gateway) = control_and_gateway(&[]);
    let green = tenant(&control, "green@example.com");
    let (token, _) = mint(&control, &green, json!({}));
    // The free plan allows more than one connection.
    let (_first, reason) = connect(&gateway, "first", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (second, reason) = connect(&gateway, "second", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    drop(second);

    control
        .admin(
            "PATCH",
            &format!("/v1/admin/tenants/{}/limits", green.id),
            Some(&json!({"connections": 1})),
        )
        .expect(200);
    let answered = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let (_c, reason) = connect(&gateway, &format!("late-{n}"), &token).await;
        if reason == ReasonCode::QUOTA_EXCEEDED {
            break;
        }
        assert_eq!(reason, ReasonCode::SUCCESS);
        assert!(
            answered.elapsed() < WITHIN,
            "a second connection still accepted {WITHIN:?} after the limit changed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the limit applied on the gateway in {:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn a_tenant_issuer_with_a_jwks_url_connects_its_tokens_to_the_gateway_and_a_rotated_key_at_once()
 {
    let (control, gateway) = control_and_gateway(&["--allow-private-destinations"]);
    let green = tenant(&control, "green@example.com");
    let blue = tenant(&control, "blue@example.com");
    let old = IdpKey::new("idp-old");
    let jwks = jwks_server(json!({"keys": [old.jwk()]})).await;
    const IDP: &str = "https://idp.example.com/";
    control
        .api(
            "POST",
            &format!("/v1/tenants/{}/issuers", green.id),
            Some(&green.api_key),
            Some(&json!({"issuer": IDP, "jwks_url": jwks.url})),
        )
        .expect(201);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |t: &Tenant, jti: &str| {
        json!({
            "iss": IDP, "aud": "mqtt", "sub": "device-7", "tnt": t.id,
            "iat": now, "exp": now + 600, "jti": jti,
        })
    };
    // The control plane fetches the URL (its own task), then publishes the keys.
    let token = old.sign(&claims(&green, "j1"));
    connects_within(&gateway, &token, Duration::from_secs(5)).await;
    // Another tenant cannot use that issuer.
    let (_c, reason) = connect(&gateway, "dev", &old.sign(&claims(&blue, "j2"))).await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // The issuer rotates: the first token with the new kid makes the gateway
    // ask the control plane to fetch again, and connects (not after the
    // JWKS TTL of 5 minutes).
    let new = IdpKey::new("idp-new");
    *jwks.keys.lock() = json!({"keys": [old.jwk(), new.jwk()]});
    let (_c, reason) = connect(&gateway, "dev-new", &new.sign(&claims(&green, "j3"))).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn readyz_is_503_until_nats_is_reachable_200_with_the_facts_503_once_nats_is_killed_and_the_facts_flow_again_when_it_is_back()
 {
    let client_addr = free_addr();
    let url = format!("nats://{client_addr}");
    let prefix = unique_prefix();
    // No NATS yet: alive, not ready.
    let mut gateway = Gateway::start(&url, &prefix);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.readyz(), 503);
    let (status, body) = {
        let r = aerie_e2e::http::send(gateway.http, "GET", "/healthz", &[], "");
        (r.status, r.body)
    };
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // NATS, but no control plane to publish the facts: still not ready.
    let mut nats = NatsServer::start_on(client_addr);
    std::thread::sleep(Duration::from_secs(1));
    let r = aerie_e2e::http::send(gateway.http, "GET", "/readyz", &[], "");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("facts"), "{}", r.body);

    let control = Control::start(&url, &prefix, &[]);
    gateway.wait_readyz(200, Duration::from_secs(10));

    nats.kill9();
    let took = gateway.wait_readyz(503, Duration::from_secs(10));
    eprintln!("/readyz went 503 {took:?} after NATS was killed");

    // A new NATS on the same address, its store empty: the gateway is ready
    // again with the facts it held, the control plane publishes everything
    // again after reconnecting, and the gateway, watching anew, follows.
    let _nats = NatsServer::start_on(client_addr);
    gateway.wait_readyz(200, Duration::from_secs(15));
    // With no change made since: a gateway started now gets every fact.
    let mut second = Gateway::start(&url, &prefix);
    second.wait_readyz(200, Duration::from_secs(10));
    let green = tenant(&control, "green@example.com");
    let (token, _) = mint(&control, &green, json!({}));
    let took = connects_within(&gateway, &token, Duration::from_secs(10)).await;
    eprintln!("a new tenant reached the gateway {took:?} after NATS came back");
}

#[tokio::test]
async fn a_control_plane_starting_on_another_database_removes_the_facts_it_does_not_have() {
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let mut first = Control::start(&nats.url(), &prefix, &[]);
    let mut gateway = Gateway::start(&nats.url(), &prefix);
    gateway.wait_ready();
    let green = tenant(&first, "green@example.com");
    let (token, _) = mint(&first, &green, json!({}));
    let (mut c, reason) = connect(&gateway, "dev", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    first.kill9();

    // Its facts stay in KV while no control plane runs...
    assert_alive(&mut c).await;
    // ... until one starts whose database has no such tenant: the full
    // reconcile at start deletes it, and the gateway drops its clients.
    let _second = Control::start(&nats.url(), &prefix, &[]);
    let (d, _) = closed_within(&mut c, Duration::from_secs(5)).await;
    assert_eq!(reason_string(&d).as_deref(), Some("tenant_deleted"));
}

#[tokio::test]
async fn a_change_made_on_the_database_without_the_api_reaches_the_gateway_by_the_periodic_pass() {
    let (control, gateway) = control_and_gateway(&[]);
    let green = tenant(&control, "green@example.com");
    let (token, _) = mint(&control, &green, json!({}));
    let (mut c, reason) = connect(&gateway, "dev", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    // The operator CLI on the database itself: no request pokes the publisher.
    let status = std::process::Command::new(aerie_e2e::server::aerie_bin())
        .args([
            "tenant",
            "suspend",
            "--database-url",
            &control.database_url,
            &green.id,
        ])
        .env("AERIE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // The publisher's safety-net pass runs every 5 s.
    let (d, took) = closed_within(&mut c, Duration::from_secs(7)).await;
    assert_eq!(reason_string(&d).as_deref(), Some("tenant_suspended"));
    eprintln!("the suspension made on the database reached the gateway in {took:?}");
}

/// The tenant's usage totals over REST.
fn usage_totals(control: &Control, t: &Tenant) -> serde_json::Value {
    control
        .api(
            "GET",
            &format!("/v1/tenants/{}/usage", t.id),
            Some(&t.api_key),
            None,
        )
        .expect(200)["totals"]
        .clone()
}

#[tokio::test]
async fn traffic_through_the_gateway_shows_in_the_usage_api_once_and_within_20_s() {
    let (control, gateway, prefix) = control_and_gateway_with_prefix(&[]);
    // Something that is not a usage report, in the gateways' stream: it is
    // counted, dropped, and holds up no report after it.
    NatsServer::shared().publish(&format!("{prefix}.usage.intruder"), b"not a report");
    let green = tenant(&control, "green@example.com");
    let (token, _) = mint(&control, &green, json!({}));
    let (mut subscriber, reason) = connect(&gateway, "sub", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    subscriber
        .subscribe(1, "t", aerie_proto::QoS::AtMostOnce)
        .await;
    let (mut publisher, reason) = connect(&gateway, "pub", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    for _ in 0..5 {
        publisher
            .publish("t", b"12345", aerie_proto::QoS::AtMostOnce, false, None)
            .await;
        subscriber.recv_publish().await;
    }
    let sent = Instant::now();
    loop {
        let totals = usage_totals(&control, &green);
        if totals["messages_in"] == 5 {
            assert_eq!(totals["messages_out"], 5, "{totals}");
            assert_eq!(totals["bytes_in"], 25, "{totals}");
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "usage still {totals} 20 s after the traffic"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("usage shown {:?} after the traffic", sent.elapsed());
    assert_eq!(
        control.metric("aerie_usage_reports_total", "outcome=\"refused\""),
        1.0
    );
    // Later reports (connection time keeps counting) add no message twice.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let totals = usage_totals(&control, &green);
    assert_eq!(totals["messages_in"], 5, "{totals}");
    assert_eq!(totals["messages_out"], 5, "{totals}");
}
