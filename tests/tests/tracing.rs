//! Request ids on every HTTP answer, and spans exported over OTLP/HTTP to a
//! receiver in the test process: HTTP requests, MQTT connections, and a
//! control-plane change and the kick it causes as one trace (`aerie serve`;
//! the scale-out shape is in tracing_scaleout.rs).

use std::time::Duration;

use aerie_e2e::otlp::{OtlpReceiver, REVOKE, ReceivedSpan, SUSPEND, assert_child_of};
use aerie_e2e::raw::{closed_within, reason_string};
use aerie_e2e::scaleout::ADMIN_TOKEN as ADMIN;
use aerie_e2e::server::free_addr;
use aerie_e2e::tenants::{Tenant, mint, publish_over_http, revoke, suspend, tenant, with_password};
use aerie_e2e::tls::TestCert;
use aerie_e2e::{RawClient, Server, ServerOptions, WAIT};
use aerie_proto::{ProtocolVersion, ReasonCode};
use serde_json::json;

const SPAN: &str = "http.request";

/// `aerie serve` exporting to `endpoint`, batching for `delay_ms`.
fn traced_server(endpoint: &str, delay_ms: u32) -> Server {
    ServerOptions::default()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", &delay_ms.to_string())
        .start()
}

fn is_request(span: &ReceivedSpan, request_id: &str) -> bool {
    span.name == SPAN && span.attr("request_id") == Some(request_id)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[test]
fn http_requests_reach_an_otlp_receiver_as_spans_with_request_id_and_route() {
    let receiver = OtlpReceiver::start();
    let server = traced_server(&receiver.endpoint(), 200);

    let health = server.http_request("GET", "/healthz", &[("x-request-id", "health-1")], "");
    assert_eq!(health.status, 200);
    let signup = server.http_request(
        "POST",
        "/v1/accounts",
        &[
            ("x-request-id", "signup-42"),
            ("authorization", "Bearer auth-secret-5f3a9c"),
            ("cookie", "session=cookie-secret-77b1"),
        ],
        r#"{"email":"otel@example.com","password":"password-secret-0d2e"}"#,
    );
    assert_eq!(signup.status, 201, "{}", signup.body);
    // A path with a tenant id and a query string: neither may be exported.
    let tenant = server.http_request(
        "GET",
        "/v1/tenants/tenant-id-9e4c?q=query-secret-1c",
        &[("x-request-id", "tenant-7")],
        "",
    );
    assert_eq!(tenant.status, 401);

    let span = receiver
        .wait_for_span(WAIT, |s| is_request(s, "signup-42"))
        .expect("the sign-up span reached the receiver");
    assert_eq!(span.attr("route"), Some("/v1/accounts"));
    assert_eq!(span.attr("method"), Some("POST"));
    assert_eq!(span.attr("status"), Some("201"));
    assert!(span.attr("latency_ms").is_some(), "{span:?}");
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("aerie")
    );
    let health = receiver
        .wait_for_span(WAIT, |s| is_request(s, "health-1"))
        .expect("the /healthz span reached the receiver");
    assert_eq!(health.attr("route"), Some("/healthz"));
    assert_eq!(health.attr("status"), Some("200"));
    let tenant = receiver
        .wait_for_span(WAIT, |s| is_request(s, "tenant-7"))
        .expect("the tenant span reached the receiver");
    assert_eq!(tenant.attr("route"), Some("/v1/tenants/{tid}"));
    assert_eq!(tenant.attr("status"), Some("401"));

    for secret in [
        "auth-secret-5f3a9c",
        "cookie-secret-77b1",
        "password-secret-0d2e",
        "tenant-id-9e4c",
        "query-secret-1c",
    ] {
        assert!(
            !receiver.bytes_contain(secret.as_bytes()),
            "{secret} was exported"
        );
    }
}

#[test]
fn otel_service_name_overrides_the_default() {
    let receiver = OtlpReceiver::start();
    let server = ServerOptions::default()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_SERVICE_NAME", "aerie-eu-1")
        .start();
    server.http_request("GET", "/healthz", &[("x-request-id", "named")], "");
    let span = receiver
        .wait_for_span(WAIT, |s| is_request(s, "named"))
        .expect("span exported");
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("aerie-eu-1")
    );
}

#[test]
fn sigterm_flushes_the_last_spans() {
    let receiver = OtlpReceiver::start();
    // Batches would wait a minute: only the shutdown flush can send this one.
    let mut server = traced_server(&receiver.endpoint(), 60_000);
    let r = server.http_request("GET", "/healthz", &[("x-request-id", "last-words")], "");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    assert!(receiver.spans().is_empty(), "exported before the flush");
    let status = server.terminate();
    assert!(status.success(), "aerie exited with {status}");
    receiver
        .wait_for_span(Duration::from_secs(1), |s| is_request(s, "last-words"))
        .expect("the span was sent on SIGTERM");
}

#[tokio::test]
async fn mqtt_connections_are_spans_with_peer_and_client_id() {
    let receiver = OtlpReceiver::start();
    let mut server = traced_server(&receiver.endpoint(), 200);
    let (client, _) = aerie_e2e::RawClient::connect(
        server.mqtt,
        aerie_proto::ProtocolVersion::V311,
        "traced-client",
        true,
    )
    .await;
    drop(client);
    let status = server.terminate();
    assert!(status.success(), "aerie exited with {status}");
    let span = receiver
        .wait_for_span(WAIT, |s| {
            s.name == "mqtt.connection" && s.attr("client_id") == Some("traced-client")
        })
        .expect("the connection's span was exported");
    assert_eq!(span.attr("transport"), Some("tcp"));
    assert!(
        span.attr("peer")
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{span:?}"
    );
}

#[test]
fn answers_carry_a_request_id_generated_or_echoed() {
    let server = Server::start(&[]);
    let generated = server.http_request("GET", "/healthz", &[], "");
    assert_eq!(generated.status, 200);
    let ids = generated.header_values("x-request-id");
    assert_eq!(ids.len(), 1, "{generated:?}");
    assert!(is_uuid(ids[0]), "{ids:?}");
    let again = server.http_request("GET", "/healthz", &[], "");
    assert_ne!(again.header_values("x-request-id"), ids, "ids are fresh");

    let echoed = server.http_request("GET", "/healthz", &[("x-request-id", "trace-me.1")], "");
    assert_eq!(echoed.header_values("x-request-id"), ["trace-me.1"]);

    // Also on errors: an unknown API route, a problem+json answer (other
    // paths are the console's).
    let missing = server.http_request("GET", "/v1/nowhere", &[("x-request-id", "lost-1")], "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header_values("x-request-id"), ["lost-1"]);

    let longest = "a".repeat(64);
    let kept = server.http_request("GET", "/healthz", &[("x-request-id", &longest)], "");
    assert_eq!(kept.header_values("x-request-id"), [longest.as_str()]);
    for unusable in ["a".repeat(65), "two words".to_owned()] {
        let r = server.http_request("GET", "/healthz", &[("x-request-id", &unusable)], "");
        let ids = r.header_values("x-request-id");
        assert_eq!(ids.len(), 1, "{r:?}");
        assert!(is_uuid(ids[0]), "{unusable:?} was replaced: {ids:?}");
    }
}

#[test]
fn serves_when_the_otlp_endpoint_is_closed() {
    let closed = free_addr();
    let mut server = traced_server(&format!("http://{closed}"), 100);
    for i in 0..3 {
        let r = server.http_request("GET", "/healthz", &[("x-request-id", &format!("c{i}"))], "");
        assert_eq!(r.status, 200);
        // Let batches fail to export in between.
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = server.terminate();
    assert!(status.success(), "aerie exited with {status}");
}

const KICK: &str = "gateway.kick";

/// `aerie serve` with tokens required, the admin routes on, exporting spans.
fn traced_authenticating_server(receiver: &OtlpReceiver) -> Server {
    ServerOptions::default()
        .anonymous(false)
        .env("AERIE_ADMIN_TOKEN", ADMIN)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .start()
}

async fn connect(server: &Server, client_id: &str, token: &str) -> RawClient {
    let (c, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, client_id, Some(token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
    c
}

/// A client of a new tenant, connected with a fresh token, is kicked for
/// `why` after `change` (a request to `method` `route`), and the kick's
/// span is a child of that request's: one trace from the REST call to the
/// disconnect, with no credential in it.
async fn assert_kick_joins_the_trace_of(
    change: impl FnOnce(&Server, &Tenant, &str),
    (method, route): (&str, &str),
    why: &str,
) {
    let receiver = OtlpReceiver::start();
    let server = traced_authenticating_server(&receiver);
    let green = tenant(&server, "traced@example.com");
    let (token, jti) = mint(&server, &green, json!({}));
    let mut client = connect(&server, "traced-dev", &token).await;

    change(&server, &green, &jti);
    let (d, _) = closed_within(&mut client, Duration::from_millis(1500)).await;
    assert_eq!(reason_string(&d).as_deref(), Some(why));

    let request = receiver.request_span(method, route);
    let kick = receiver.span_with(KICK, "why", why);
    assert_child_of(&kick, &request);
    assert_eq!(kick.attr("client_id"), Some("traced-dev"));
    assert_eq!(kick.attr("tenant"), Some(green.id.as_str()));
    receiver.assert_none_exported(&[&token, &green.api_key]);
}

#[tokio::test]
async fn a_revocation_or_a_suspension_and_the_kick_it_causes_are_one_trace() {
    assert_kick_joins_the_trace_of(revoke, REVOKE, "token_revoked").await;
    assert_kick_joins_the_trace_of(|s, t, _| suspend(s, t), SUSPEND, "tenant_suspended").await;
}

/// `aerie serve` exporting to `receiver` with the extra variables `env`.
fn server_exporting_to(receiver: &OtlpReceiver, env: &[(&str, &std::path::Path)]) -> Server {
    env.iter()
        .fold(
            ServerOptions::default()
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
                .env("OTEL_BSP_SCHEDULE_DELAY", "200"),
            |options, (key, path)| options.env(key, path.to_str().unwrap()),
        )
        .start()
}

#[test]
fn spans_reach_an_https_collector_whose_ca_is_configured() {
    let collector = TestCert::localhost();
    let receiver = OtlpReceiver::start_tls(&collector, None);
    assert!(receiver.endpoint().starts_with("https://"));
    let server = server_exporting_to(
        &receiver,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &collector.cert_pem)],
    );
    server.http_request("GET", "/healthz", &[("x-request-id", "over-tls")], "");
    receiver
        .wait_for_span(WAIT, |s| is_request(s, "over-tls"))
        .expect("the span reached the collector over HTTPS");
}

#[test]
fn a_collector_that_requires_a_client_certificate_gets_spans_from_one_configured() {
    let collector = TestCert::localhost();
    let client = TestCert::localhost();
    let receiver = OtlpReceiver::start_tls(&collector, Some(&client));
    let ca = (
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        collector.cert_pem.as_path(),
    );
    // Without a client certificate the collector refuses the session.
    let anonymous = server_exporting_to(&receiver, &[ca]);
    anonymous.http_request("GET", "/healthz", &[("x-request-id", "no-cert")], "");
    let server = server_exporting_to(
        &receiver,
        &[
            ca,
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client.cert_pem),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client.key_pem),
        ],
    );
    server.http_request("GET", "/healthz", &[("x-request-id", "with-cert")], "");
    receiver
        .wait_for_span(WAIT, |s| is_request(s, "with-cert"))
        .expect("the span reached the collector over mutual TLS");
    // The first server's batch was due before the second's.
    assert!(
        !receiver.spans().iter().any(|s| is_request(s, "no-cert")),
        "a client without a certificate got through"
    );
}

#[tokio::test]
async fn an_http_publish_and_its_deliveries_are_one_trace() {
    let receiver = OtlpReceiver::start();
    let server = traced_authenticating_server(&receiver);
    let green = tenant(&server, "publisher@example.com");
    let (token, _) = mint(&server, &green, json!({}));
    let mut subscribers = Vec::new();
    for (client_id, filter) in [("all", "t/#"), ("one", "t/1"), ("other", "u/1")] {
        let mut c = connect(&server, client_id, &token).await;
        c.subscribe(1, filter, aerie_proto::QoS::AtMostOnce).await;
        subscribers.push(c);
    }

    let outcome = publish_over_http(&server, &green, "t/1", "payload-secret-8e1f");
    assert_eq!(outcome["matched_subscriptions"], 2);
    for c in &mut subscribers[..2] {
        assert_eq!(&c.recv_publish().await.payload[..], b"payload-secret-8e1f");
    }

    let request = receiver.request_span("POST", "/v1/tenants/{tid}/messages");
    let publish = receiver.span_with("broker.publish", "tenant", &green.id);
    assert_child_of(&publish, &request);
    assert_eq!(publish.attr("deliveries"), Some("2"), "{publish:?}");
    assert_eq!(publish.attr("matched"), Some("2"), "{publish:?}");
    receiver.assert_none_exported(&["payload-secret-8e1f", &token, &green.api_key]);
}
