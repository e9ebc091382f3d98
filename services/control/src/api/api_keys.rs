//! Tenant API keys: create (shown once, with at most the creator's scopes),
//! list, revoke (with every key it created).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::{TenantWith, valid_name};
use crate::AppState;
use crate::auth;
use crate::error::{ApiError, ApiJson, Problem};
use crate::scopes::{Scope, Scopes, need};
use crate::store;

/// A tenant API key (its secret only in the answer to its creation).
#[derive(Serialize, ToSchema)]
struct ApiKeyView {
    id: Uuid,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// What the key may do.
    scopes: Vec<Scope>,
    /// The API key that created this one (revoking it revokes this one too);
    /// `null` if a person's session did.
    created_by: Option<Uuid>,
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
            scopes: k.scopes.to_vec(),
            created_by: k.created_by,
            key: None,
        }
    }
}

/// The body of creating an API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1 to 100 characters (after trimming), no control characters.
    name: String,
    /// What the key may do; at most what the caller holds. Absent: everything
    /// the caller holds (a person's session holds every scope).
    #[serde(default)]
    scopes: Option<Vec<Scope>>,
}

/// Create an API key for the tenant.
///
/// The key (`aerie_…`) is in this answer only: it is stored as a hash. A key
/// made with an API key never holds a scope its creator lacks, and is revoked
/// with it.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/api-keys",
    tag = "api-keys",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = ApiKeyView),
        (status = 400, description = "The name is empty, too long or has control characters",
         body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The calling key lacks the `keys` scope, or a scope it asks to grant",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown scope name", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    TenantWith { who, tenant, .. }: TenantWith<need::Keys>,
    ApiJson(body): ApiJson<NewApiKey>,
) -> Result<impl IntoResponse, ApiError> {
    let name = valid_name(&body.name)?;
    let held = who.scopes();
    let scopes = match body.scopes {
        None => held,
        Some(asked) => asked.into_iter().collect::<Scopes>(),
    };
    if let Some(missing) = scopes.first_missing_from(held) {
        crate::scopes::count_refusal(missing);
        return Err(ApiError::Forbidden(
            format!(
                "cannot grant the `{}` scope: this API key does not hold it",
                missing.name()
            )
            .into(),
        ));
    }
    let created_by = who.api_key();
    let secret = auth::new_api_key();
    let key = store::ApiKey {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        name,
        created_at: store::now(),
        scopes,
        created_by,
    };
    state
        .store()
        .insert_api_key(&key, &auth::api_key_hash(&secret))
        .await?;
    tracing::info!(
        tenant_id = %key.tenant_id,
        key_id = %key.id,
        created_by = ?key.created_by,
        scopes = %key.scopes,
        "API key created"
    );
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
    TenantWith { tenant, .. }: TenantWith<need::Keys>,
) -> Result<impl IntoResponse, ApiError> {
    let keys = state.store().api_keys_of(&tenant.id).await?;
    Ok(Json(
        keys.into_iter().map(ApiKeyView::from).collect::<Vec<_>>(),
    ))
}

/// Revoke an API key and every key it created (transitively): requests with
/// any of them get 401 from now on, the tokens they minted are revoked (their
/// clients disconnected) and the issuers they registered removed.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/api-keys/{key_id}",
    tag = "api-keys",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("key_id" = String, Path, description = "API key id (a UUID)"),
    ),
    responses(
        (status = 204, description = "Revoked, with the keys it created, the tokens they minted \
         and the issuers they registered"),
        (status = 404, description = "No such tenant or no such API key that is not revoked",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Keys>,
    Path((_, key_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = Uuid::parse_str(&key_id).map_err(|_| ApiError::NotFound("API key"))?;
    if !state.store().revoke_api_key(&tenant.id, key_id).await? {
        return Err(ApiError::NotFound("API key"));
    }
    tracing::info!(tenant_id = %tenant.id, %key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
