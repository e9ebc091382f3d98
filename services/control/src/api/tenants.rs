//! Tenants: create, list, get, rename, delete; and who may see which.

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiJson, Problem};
use crate::plan::{FREE_PLAN, Limits};
use crate::scopes::{Needs, need};
use crate::store::{self, StoreError};
use crate::{AppState, Endpoints};

/// A tenant: an isolated MQTT namespace with its plan, limits and endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = Tenant)]
pub struct TenantView {
    /// 10 characters of `[a-z0-9]`.
    #[schema(example = "k3v9x0q2ab")]
    id: String,
    name: String,
    #[schema(example = "free")]
    plan: String,
    limits: Limits,
    #[schema(example = "active")]
    status: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    endpoints: Endpoints,
}

impl TenantView {
    pub(super) fn new(t: store::Tenant, endpoints: &Endpoints) -> Self {
        TenantView {
            id: t.id,
            name: t.name,
            plan: t.plan,
            limits: t.limits,
            status: t.status,
            created_at: t.created_at,
            endpoints: endpoints.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// `{name}`: the body of creating or renaming a tenant and of creating an API key.
pub struct NameBody {
    /// 1 to 100 characters (after trimming), no control characters.
    pub(super) name: String,
}

const MAX_NAME_CHARS: usize = 100;

/// Trimmed; 1 to 100 characters, no control characters. Stored verbatim otherwise.
pub(super) fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::Invalid(format!(
            "name must have 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// The tenant `tid` if the caller may see it; otherwise 404, whether or not it exists.
async fn visible_tenant(
    state: &AppState,
    who: &Principal,
    tid: &str,
) -> Result<store::Tenant, ApiError> {
    let visible = match who {
        Principal::ApiKey { tenant_id, .. } => tenant_id == tid,
        Principal::Account { .. } => true,
    };
    let tenant = match visible {
        true => state.store().tenant(tid).await?,
        false => None,
    };
    match (tenant, who) {
        (Some(t), Principal::Account { id, .. }) if t.account_id == *id => Ok(t),
        (Some(t), Principal::ApiKey { .. }) => Ok(t),
        _ => Err(ApiError::NotFound("tenant")),
    }
}

/// The tenant named by `{tid}` in the path, if the caller may see it;
/// otherwise the request ends with 401 (no credentials) or 404.
pub struct VisibleTenant {
    pub who: Principal,
    pub tenant: store::Tenant,
}

impl FromRequestParts<AppState> for VisibleTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let who = Principal::from_request_parts(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("tenant"))?;
        let tid = params.get("tid").ok_or(ApiError::NotFound("tenant"))?;
        let tenant = visible_tenant(state, &who, tid).await?;
        Ok(VisibleTenant { who, tenant })
    }
}

/// [`VisibleTenant`] for a route that needs scope `S`: after the tenant
/// checks (another tenant stays a 404), a key without `S` gets 403 naming it.
/// Runs before the body is read, so a refused key learns nothing from it.
pub struct TenantWith<S: Needs> {
    pub who: Principal,
    pub tenant: store::Tenant,
    need: PhantomData<S>,
}

impl<S: Needs> FromRequestParts<AppState> for TenantWith<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let VisibleTenant { who, tenant } = VisibleTenant::from_request_parts(parts, state).await?;
        who.require(S::SCOPE)?;
        Ok(TenantWith {
            who,
            tenant,
            need: PhantomData,
        })
    }
}

fn account_only(who: &Principal, what: &'static str) -> Result<Uuid, ApiError> {
    match who {
        Principal::Account { id, .. } => Ok(*id),
        Principal::ApiKey { .. } => Err(ApiError::Forbidden(what.into())),
    }
}

/// List the tenants the caller sees, oldest first.
///
/// A session token or an account API key sees the account's tenants; a
/// tenant API key sees its own tenant only.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses((status = 200, description = "The tenants", body = Vec<TenantView>)),
    security(("bearer" = [])),
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let tenants = match &who {
        Principal::Account { id, .. } => state.store().tenants_of(*id).await?,
        Principal::ApiKey { tenant_id, .. } => {
            state.store().tenant(tenant_id).await?.into_iter().collect()
        }
    };
    let endpoints = state.endpoints();
    Ok(Json(
        tenants
            .into_iter()
            .map(|t| TenantView::new(t, endpoints))
            .collect::<Vec<_>>(),
    ))
}

/// Create a tenant on the free plan.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = NameBody,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 400, description = "The name is empty, too long or has control characters",
         body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Tenant API keys cannot create tenants; use a session token \
         or an account API key",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let account_id = account_only(
        &who,
        "tenant API keys cannot create tenants; use a session token or an account API key",
    )?;
    let name = valid_name(&body.name)?;
    // 36^10 ids: a collision is unlikely, but never an error the caller sees.
    for _ in 0..3 {
        let tenant = store::Tenant {
            id: auth::new_tenant_id(),
            account_id,
            name: name.clone(),
            plan: FREE_PLAN.to_owned(),
            limits: Limits::FREE,
            status: "active".to_owned(),
            created_at: store::now(),
        };
        match state.store().insert_tenant(&tenant).await {
            Ok(()) => {
                tracing::info!(tenant_id = %tenant.id, %account_id, "tenant created");
                let view = TenantView::new(tenant, state.endpoints());
                return Ok((StatusCode::CREATED, Json(view)));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow::anyhow!("no free tenant id after 3 tries").into())
}

/// Get a tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}",
    tag = "tenants",
    params(("tid" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = TenantView)),
    security(("bearer" = [])),
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
) -> Json<TenantView> {
    Json(TenantView::new(tenant, state.endpoints()))
}

/// Rename a tenant.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{tid}",
    tag = "tenants",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = NameBody,
    responses(
        (status = 200, description = "Renamed", body = TenantView),
        (status = 400, description = "The name is empty, too long or has control characters",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn rename_tenant(
    State(state): State<AppState>,
    TenantWith { mut tenant, .. }: TenantWith<need::Tenant>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = valid_name(&body.name)?;
    if !state.store().rename_tenant(&tenant.id, &name).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tenant.name = name;
    Ok(Json(TenantView::new(tenant, state.endpoints())))
}

/// Delete a tenant with its API keys and tokens.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}",
    tag = "tenants",
    params(("tid" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Tenant API keys cannot delete tenants; use a session token \
         or an account API key",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_tenant(
    State(state): State<AppState>,
    VisibleTenant { who, tenant }: VisibleTenant,
) -> Result<impl IntoResponse, ApiError> {
    account_only(
        &who,
        "tenant API keys cannot delete tenants; use a session token or an account API key",
    )?;
    if !state.store().delete_tenant(&tenant.id).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tracing::info!(tenant_id = %tenant.id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}
