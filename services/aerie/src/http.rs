//! The HTTP listener: the control plane's router (REST API, /healthz,
//! /readyz) plus /metrics, every request in an `http.request` span with a
//! request id, served within a connection cap, a header timeout and a
//! request timeout.

use std::sync::Arc;
use std::time::Duration;

use aerie_core::metrics as m;
use aerie_gateway::edge::Edge;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::cli::HttpEdgeArgs;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id kept as it is.
const MAX_REQUEST_ID_LEN: usize = 64;

/// `control` (which serves /healthz and /readyz) with /metrics added, wrapped
/// in the request-id and tracing layers; a request taking longer than
/// `request_timeout` is answered 408.
pub fn router(control: Router, metrics: PrometheusHandle, request_timeout: Duration) -> Router {
    control
        .merge(
            Router::new()
                .route("/metrics", get(render_metrics))
                .with_state(metrics),
        )
        // Inside the span, so the 408 is traced like any answer.
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            time_limit,
        ))
        // Layers run from the last added to the first: drop an unusable
        // client id, set one, hide credentials, open the span, answer with
        // the id.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response)
                .on_failure(on_failure),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
}

/// Pokes `notify` after each request that may have changed something (any
/// method but GET, HEAD and OPTIONS), once its handler has answered: what
/// it wrote is in the store by then.
pub fn notify_after_writes(router: Router, notify: Arc<Notify>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        notify,
        poke_after_write,
    ))
}

async fn poke_after_write(
    State(notify): State<Arc<Notify>>,
    request: Request,
    next: Next,
) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if writes {
        notify.notify_one();
    }
    response
}

/// Serves `routes`, as [`router`] completes them, on the HTTP listener in
/// a task until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    routes: Router,
    metrics: PrometheusHandle,
    limits: &HttpEdgeArgs,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = router(
        routes,
        metrics,
        Duration::from_secs(limits.http_request_timeout),
    );
    tokio::spawn(serve(listener, app, limits.clone(), shutdown))
}

/// Serves `app` on the HTTP listener until `shutdown`, within `limits`
/// (connection cap, header timeout); each request carries its TCP peer
/// (`ConnectInfo`), which the rate limits key on.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpEdgeArgs,
    shutdown: CancellationToken,
) {
    let edge = Edge {
        name: "http",
        permits: Arc::new(Semaphore::new(limits.http_max_connections as usize)),
        refused: metrics::counter!(m::HTTP_CONNECTIONS_REFUSED_TOTAL),
        tls: None,
        header_timeout: Duration::from_secs(limits.http_header_timeout),
        shutdown,
    };
    aerie_gateway::edge::serve(listener, app, edge).await
}

/// Answers 408 (problem+json) for a request still unanswered after
/// `limit`: a body trickling in, or a handler stuck, does not hold the
/// connection open indefinitely.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(m::HTTP_REQUEST_TIMEOUTS_TOTAL).increment(1);
            let status = StatusCode::REQUEST_TIMEOUT;
            let problem = serde_json::json!({
                "type": "urn:aerie:problem:request-timeout",
                "title": status.canonical_reason(),
                "status": status.as_u16(),
                "detail": format!("the request took longer than {} s", limit.as_secs()),
            });
            let mut response = (status, axum::Json(problem)).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(aerie_control::error::PROBLEM_JSON),
            );
            // The rest of the body may never come: don't wait for it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
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

/// A 5xx answer, logged at ERROR, except 503: that is a state (not ready,
/// or a part unavailable) that whoever decided it logs once per change
/// (`aerie_control::readiness_log`), not a fault at every probe.
fn on_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    if let ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) = class {
        return;
    }
    tracing::error!(classification = %class, latency_ms = latency.as_secs_f64() * 1000.0, "response failed");
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
        handle.render() + &crate::process_metrics::render(),
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
