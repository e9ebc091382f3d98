//! The scale-out shape's traces, with a real nats-server, `aerie control
//! --nats` and `aerie gateway` each exporting spans to one OTLP receiver: a
//! revocation's REST request on the control plane and the kick on the
//! gateway it causes are one trace, its context carried in the facts' KV
//! entry.

use std::time::Duration;

use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::otlp::OtlpReceiver;
use aerie_e2e::raw::{closed_within, reason_string};
use aerie_e2e::scaleout::{Control, Gateway};
use aerie_e2e::tenants::{mint, revoke, tenant};
use aerie_proto::ReasonCode;
use serde_json::json;

#[tokio::test]
async fn a_revocation_on_the_control_plane_and_the_gateways_kick_are_one_trace() {
    let receiver = OtlpReceiver::start();
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

    let green = tenant(&control, "trace@example.com");
    let (token, jti) = mint(&control, &green, json!({}));
    gateway.wait_accepts(&token).await;
    let (mut client, reason) = gateway.connect_v5("traced-dev", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    revoke(&control, &green, &jti);
    let (d, _) = closed_within(&mut client, Duration::from_millis(1500)).await;
    assert_eq!(reason_string(&d).as_deref(), Some("token_revoked"));

    let request = receiver.request_span("DELETE", "/v1/tenants/{tid}/tokens/{jti}");
    let kick = receiver.span_with("gateway.kick", "client_id", "traced-dev");
    assert_eq!(
        request.resource.get("service.name").map(String::as_str),
        Some("aerie-control")
    );
    assert_eq!(
        kick.resource.get("service.name").map(String::as_str),
        Some("aerie-gateway")
    );
    assert_eq!(kick.attr("why"), Some("token_revoked"));
    assert_eq!(kick.trace_id, request.trace_id, "{request:?}\n{kick:?}");
    assert_eq!(
        kick.parent_span_id, request.span_id,
        "{request:?}\n{kick:?}"
    );
    for secret in [&token, &green.api_key] {
        assert!(
            !receiver.bytes_contain(secret.as_bytes()),
            "a credential was exported"
        );
    }
}
