//! The scale-out shape's traces, with a real nats-server, `aerie control
//! --nats` and `aerie gateway` each exporting spans to one OTLP receiver: a
//! revocation's REST request on the control plane and the kick on the
//! gateway it causes are one trace (its context carried in the facts' KV
//! entry), and so are an HTTP publish and its deliveries on the gateway
//! (its context in the live request's `traceparent` header).

use std::time::Duration;

use aerie_e2e::RawClient;
use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::otlp::{OtlpReceiver, REVOKE, ReceivedSpan, SUSPEND, assert_child_of};
use aerie_e2e::raw::{closed_within, reason_string};
use aerie_e2e::scaleout::{Control, Gateway};
use aerie_e2e::tenants::{Tenant, mint, publish_over_http, revoke, suspend, tenant};
use aerie_proto::ReasonCode;
use serde_json::json;

/// A control plane and a ready gateway, each exporting spans to `receiver`
/// under its own service name.
fn traced_control_and_gateway(receiver: &OtlpReceiver) -> (Control, Gateway) {
    let endpoint = receiver.endpoint();
    let traced = |service| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_SERVICE_NAME", service),
        ]
    };
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let control = Control::start_with_env(&nats.url(), &prefix, &[], &traced("aerie-control"));
    let mut gateway = Gateway::start_with_env(&nats.url(), &prefix, &traced("aerie-gateway"));
    gateway.wait_ready();
    (control, gateway)
}

/// A new tenant's client `client_id`, connected to `gateway` with a fresh
/// token once the facts let it; the tenant, the token and its `jti`.
async fn connected(
    control: &Control,
    gateway: &Gateway,
    client_id: &str,
) -> (Tenant, String, String, RawClient) {
    let green = tenant(control, "traced@example.com");
    let (token, jti) = mint(control, &green, json!({}));
    gateway.wait_accepts(&token).await;
    let (client, reason) = gateway.connect_v5(client_id, &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    (green, token, jti, client)
}

fn service(span: &ReceivedSpan) -> Option<&str> {
    span.resource.get("service.name").map(String::as_str)
}

/// A gateway's client is kicked for `why` after `change` on the control
/// plane (a request to `method` `route`), and the kick's span, exported by
/// the gateway, is a child of the request's, exported by the control
/// plane: one trace, with no credential in it.
async fn assert_kick_joins_the_trace_of(
    change: impl FnOnce(&Control, &Tenant, &str),
    (method, route): (&str, &str),
    why: &str,
) {
    let receiver = OtlpReceiver::start();
    let (control, gateway) = traced_control_and_gateway(&receiver);
    let (green, token, jti, mut client) = connected(&control, &gateway, "traced-dev").await;

    change(&control, &green, &jti);
    let (d, _) = closed_within(&mut client, Duration::from_millis(1500)).await;
    assert_eq!(reason_string(&d).as_deref(), Some(why));

    let request = receiver.request_span(method, route);
    let kick = receiver.span_with("gateway.kick", "client_id", "traced-dev");
    assert_eq!(service(&request), Some("aerie-control"));
    assert_eq!(service(&kick), Some("aerie-gateway"));
    assert_eq!(kick.attr("why"), Some(why));
    assert_child_of(&kick, &request);
    receiver.assert_none_exported(&[&token, &green.api_key]);
}

#[tokio::test]
async fn a_revocation_or_a_suspension_on_the_control_plane_and_the_gateways_kick_are_one_trace() {
    assert_kick_joins_the_trace_of(revoke, REVOKE, "token_revoked").await;
    assert_kick_joins_the_trace_of(|s, t, _| suspend(s, t), SUSPEND, "tenant_suspended").await;
}

#[tokio::test]
async fn an_http_publish_on_the_control_plane_and_its_deliveries_on_the_gateway_are_one_trace() {
    let receiver = OtlpReceiver::start();
    let (control, gateway) = traced_control_and_gateway(&receiver);
    let (green, _, _, mut subscriber) = connected(&control, &gateway, "subscriber").await;
    subscriber
        .subscribe(1, "t/#", aerie_proto::QoS::AtMostOnce)
        .await;

    let outcome = publish_over_http(&control, &green, "t/1", "payload-secret-3c7a");
    assert_eq!(outcome["matched_subscriptions"], 1);
    assert_eq!(
        &subscriber.recv_publish().await.payload[..],
        b"payload-secret-3c7a"
    );

    let request = receiver.request_span("POST", "/v1/tenants/{tid}/messages");
    let publish = receiver.span_with("broker.publish", "tenant", &green.id);
    assert_eq!(service(&request), Some("aerie-control"));
    assert_eq!(service(&publish), Some("aerie-gateway"));
    assert_eq!(
        publish.trace_id, request.trace_id,
        "{request:?}\n{publish:?}"
    );
    assert_eq!(publish.attr("deliveries"), Some("1"), "{publish:?}");
    assert!(
        !receiver.bytes_contain(b"payload-secret-3c7a"),
        "the payload was exported"
    );
}
