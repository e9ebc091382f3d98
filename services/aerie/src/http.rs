//! The HTTP listener: the control plane's router (REST API, /healthz,
//! /readyz) plus /metrics.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// `control` (which serves /healthz and /readyz) with /metrics added.
pub fn router(control: Router, metrics: PrometheusHandle) -> Router {
    control.merge(
        Router::new()
            .route("/metrics", get(render_metrics))
            .with_state(metrics),
    )
}

async fn render_metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
