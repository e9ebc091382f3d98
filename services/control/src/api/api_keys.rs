//! Tenant API keys: create (shown once), list, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::{NameBody, VisibleTenant, valid_name};
use crate::AppState;
use crate::auth;
use crate::error::{ApiError, ApiJson, Problem};
use crate::store;

/// A tenant API key (its secret only in the answer to its creation).
#[derive(Serialize, ToSchema)]
struct ApiKeyView {
    id: Uuid,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<store::ApiKey> for ApiKeyView {
    fn from(k: store::ApiKey) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            created_at: k.created_at,
            key: None,
        }
    }
}

/// Create an API key for the tenant.
///
/// The key (`aerie_…`) is in this answer only: it is stored as a hash.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/api-keys",
    tag = "api-keys",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = NameBody,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = ApiKeyView),
        (status = 400, description = "The name is empty, too long or has control characters",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = valid_name(&body.name)?;
    let secret = auth::new_api_key();
    let key = store::ApiKey {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        name,
        created_at: store::now(),
    };
    state
        .store()
        .insert_api_key(&key, &auth::api_key_hash(&secret))
        .await?;
    tracing::info!(tenant_id = %key.tenant_id, key_id = %key.id, "API key created");
    let view = ApiKeyView {
        key: Some(secret),
        ..ApiKeyView::from(key)
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// List the tenant's API keys that are not revoked, oldest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/api-keys",
    tag = "api-keys",
    params(("tid" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The keys, without their secrets", body = Vec<ApiKeyView>)),
    security(("bearer" = [])),
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
) -> Result<impl IntoResponse, ApiError> {
    let keys = state.store().api_keys_of(&tenant.id).await?;
    Ok(Json(
        keys.into_iter().map(ApiKeyView::from).collect::<Vec<_>>(),
    ))
}

/// Revoke an API key: requests with it get 401 from now on.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/api-keys/{key_id}",
    tag = "api-keys",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("key_id" = String, Path, description = "API key id (a UUID)"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such tenant or no such API key that is not revoked",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
    Path((_, key_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = Uuid::parse_str(&key_id).map_err(|_| ApiError::NotFound("API key"))?;
    if !state.store().revoke_api_key(&tenant.id, key_id).await? {
        return Err(ApiError::NotFound("API key"));
    }
    tracing::info!(tenant_id = %tenant.id, %key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
