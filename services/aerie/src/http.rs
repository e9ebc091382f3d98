//! The HTTP listener: the control plane's router (REST API, /healthz,
//! /readyz) plus /metrics, every request in an `http.request` span with a
//! request id.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id kept as it is.
const MAX_REQUEST_ID_LEN: usize = 64;

/// `control` (which serves /healthz and /readyz) with /metrics added, wrapped
/// in the request-id and tracing layers.
pub fn router(control: Router, metrics: PrometheusHandle) -> Router {
    control
        .merge(
            Router::new()
                .route("/metrics", get(render_metrics))
                .with_state(metrics),
        )
        // Layers run from the last added to the first: drop an unusable
        // client id, set one, hide credentials, open the span, answer with
        // the id.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
}

/// The route is the matched template (`/v1/tenants/{tid}`), never the raw
/// path (tenant ids, token ids) nor the query string.
fn make_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        request_id,
        method = %request.method(),
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        span.record("route", route.as_str());
    }
    span
}

fn on_response(response: &Response, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::debug!("request finished");
}

/// Keeps a client's `x-request-id` only if it is one header of 1 to 64
/// visible ASCII characters; otherwise a fresh id replaces it.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers();
    let mut ids = headers.get_all(&X_REQUEST_ID).iter();
    let usable = match (ids.next(), ids.next()) {
        (Some(id), None) => is_usable_request_id(id.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !usable {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

fn is_usable_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

async fn render_metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::is_usable_request_id;

    #[test]
    fn request_ids_are_short_visible_ascii() {
        assert!(is_usable_request_id(b"abc-123_DEF.x"));
        assert!(is_usable_request_id(&[b'a'; 64]));
        assert!(!is_usable_request_id(&[b'a'; 65]));
        assert!(!is_usable_request_id(b""));
        assert!(!is_usable_request_id(b"has space"));
        assert!(!is_usable_request_id(b"tab\there"));
        assert!(!is_usable_request_id("caf\u{e9}".as_bytes()));
    }
}
