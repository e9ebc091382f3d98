//! The tenant's live MQTT state, through the attached [`BrokerPort`]:
//! connected clients (list, disconnect), publishing, retained messages.
//! Without a broker attached these answer 503.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tenants::TenantWith;
use crate::AppState;
use crate::broker::{BrokerPort, ClientInfo, HttpPublish, PublishOutcome};
use crate::error::{ApiError, ApiJson, Problem};
use crate::scopes::need;

/// Largest payload published through the REST API (the tenant's
/// `max_packet_size` may lower it).
pub const MAX_PUBLISH_PAYLOAD_BYTES: usize = 32 * 1024;

fn attached(state: &AppState) -> Result<&dyn BrokerPort, ApiError> {
    state
        .broker()
        .ok_or_else(|| ApiError::Unavailable("no broker is attached to this control plane".into()))
}

/// List the tenant's connected MQTT clients, by client id.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/clients",
    tag = "broker",
    params(("tid" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The connected clients", body = Vec<ClientInfo>),
        (status = 503, description = "No broker is attached to this control plane, or it does not answer",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_clients(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Clients>,
) -> Result<impl IntoResponse, ApiError> {
    let mut clients = attached(&state)?.clients(&tenant.id).await?;
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Ok(Json(clients))
}

/// Disconnect one of the tenant's MQTT clients.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/clients/{client_id}",
    tag = "broker",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("client_id" = String, Path, description = "MQTT client id (percent-encoded)"),
    ),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 404, description = "No such tenant, or no client with this id is connected",
         body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No broker is attached to this control plane, or it does not answer",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn disconnect_client(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Clients>,
    Path((_, client_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    if !attached(&state)?.disconnect(&tenant.id, &client_id).await? {
        return Err(ApiError::NotFound("client"));
    }
    tracing::info!(tenant_id = %tenant.id, %client_id, "client disconnected through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// A message to publish: `topic` and exactly one of `payload` (UTF-8 text)
/// and `payload_base64` (bytes).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// A topic name: no wildcards, not starting with `$`.
    #[schema(example = "sensors/kitchen/temperature")]
    topic: String,
    /// The payload as UTF-8 text.
    payload: Option<String>,
    /// The payload as base64 (standard alphabet, padded).
    payload_base64: Option<String>,
    /// 0 or 1; 0 if absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    qos: u8,
    /// Keep it as the topic's retained message (an empty payload clears it).
    #[serde(default)]
    retain: bool,
}

fn valid_publish(body: PublishBody, max_payload: usize) -> Result<HttpPublish, ApiError> {
    let bad = |why: String| ApiError::Unprocessable(why);
    aerie_proto::topic::validate_topic_name(&body.topic)
        .map_err(|e| bad(format!("topic {:?} is not valid: {e}", body.topic)))?;
    if body.topic.starts_with('$') {
        return Err(bad("topics starting with `$` are the broker's own".into()));
    }
    if body.qos > 1 {
        return Err(bad("qos must be 0 or 1".into()));
    }
    let payload = match (body.payload, body.payload_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => STANDARD
            .decode(b64.trim())
            .map_err(|_| bad("payload_base64 is not valid base64".into()))?,
        _ => {
            return Err(bad(
                "give exactly one of `payload` and `payload_base64`".into()
            ));
        }
    };
    if payload.len() > max_payload {
        return Err(bad(format!(
            "the payload has {} bytes; at most {max_payload} may be published through the API",
            payload.len()
        )));
    }
    Ok(HttpPublish {
        topic: body.topic,
        payload,
        qos: body.qos,
        retain: body.retain,
    })
}

/// Publish a message to the tenant's subscribers, as a client's PUBLISH would.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/messages",
    tag = "broker",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = PublishBody,
    responses(
        (status = 200, description = "Published", body = PublishOutcome),
        (status = 422, description = "A bad topic, qos or payload (not exactly one of the two, not base64, \
                                      too large), or the tenant's limits refuse it",
         body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No broker is attached to this control plane, or it does not answer",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn publish(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Messages>,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<impl IntoResponse, ApiError> {
    let max_payload = MAX_PUBLISH_PAYLOAD_BYTES.min(
        tenant
            .limits
            .max_packet_size
            .try_into()
            .unwrap_or(usize::MAX),
    );
    let message = valid_publish(body, max_payload)?;
    let (topic, bytes, qos) = (message.topic.clone(), message.payload.len(), message.qos);
    let outcome = attached(&state)?.publish(&tenant.id, message).await?;
    tracing::debug!(tenant_id = %tenant.id, %topic, bytes, qos, "published through the API");
    Ok(Json(outcome))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetainedQuery {
    /// A topic filter (`+` and `#` allowed; not a `$share/` filter).
    #[param(example = "sensors/#")]
    filter: String,
}

/// A retained message.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetainedView {
    topic: String,
    qos: u8,
    /// The payload as base64 (standard alphabet, padded).
    payload_base64: String,
    /// The payload as text, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

/// The tenant's retained messages whose topics match `filter`, by topic.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/retained",
    tag = "broker",
    params(("tid" = String, Path, description = "Tenant id"), RetainedQuery),
    responses(
        (status = 200, description = "The matching retained messages", body = Vec<RetainedView>),
        (status = 400, description = "No `filter` query parameter",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`filter` is not a valid topic filter",
         body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No broker is attached to this control plane, or it does not answer",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn retained(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Messages>,
    query: Result<Query<RetainedQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(RetainedQuery { filter }) = query.map_err(|r| ApiError::Invalid(r.body_text()))?;
    aerie_proto::topic::validate_topic_filter(&filter)
        .map_err(|e| ApiError::Unprocessable(format!("filter {filter:?} is not valid: {e}")))?;
    if filter.starts_with("$share/") {
        return Err(ApiError::Unprocessable(
            "shared subscription filters do not select retained messages".into(),
        ));
    }
    let mut messages = attached(&state)?.retained(&tenant.id, &filter).await?;
    messages.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(
        messages
            .into_iter()
            .map(|m| RetainedView {
                payload_base64: STANDARD.encode(&m.payload),
                payload: String::from_utf8(m.payload).ok(),
                topic: m.topic,
                qos: m.qos,
            })
            .collect::<Vec<_>>(),
    ))
}
