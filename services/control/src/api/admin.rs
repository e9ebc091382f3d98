//! Operator routes under `/v1/admin`: every tenant, a tenant's limits, its
//! status. They take the operator's admin token (`--admin-token-file` /
//! `AERIE_ADMIN_TOKEN`), never a session token or an API key, and are
//! disabled (404) when no admin token is configured.
//!
//! The operations themselves ([`set_limits`], [`set_status`]) take a store,
//! so that `aerie tenant` on a local data dir runs the same code.

use aws_lc_rs::hmac;
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::TenantView;
use crate::AppState;
use crate::error::{ApiError, ApiJson, Problem};
use crate::plan::Limits;
use crate::store::{ControlStore, Tenant};

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_SUSPENDED: &str = "suspended";

/// The operator credential. Only an HMAC of it is kept, under a random key:
/// a presented token is checked with `hmac::verify`, in constant time.
pub struct AdminToken {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl Clone for AdminToken {
    fn clone(&self) -> Self {
        AdminToken {
            key: self.key.clone(),
            tag: self.tag,
        }
    }
}

impl AdminToken {
    /// `token` without surrounding whitespace (a file's final newline); at
    /// least [`MIN_ADMIN_TOKEN_CHARS`] characters, no whitespace or control
    /// characters inside. The error names neither the token nor its length.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(format!(
                "the admin token must have at least {MIN_ADMIN_TOKEN_CHARS} characters \
                 (make one with `openssl rand -hex 32`)"
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the admin token must not contain spaces or control characters".into());
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, &crate::auth::new_secret());
        let tag = hmac::sign(&key, token.as_bytes());
        Ok(AdminToken { key, tag })
    }

    /// Whether `presented` is the admin token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// A request that carries the admin token; otherwise it ends with 401, or
/// with 404 when the admin routes are disabled.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(admin) = state.admin_token() else {
            return Err(ApiError::Body {
                status: StatusCode::NOT_FOUND,
                detail: "admin routes are disabled; start with --admin-token-file".into(),
            });
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "admin routes need `Authorization: Bearer <admin token>`",
            ))?;
        if !admin.matches(presented) {
            tracing::warn!("admin route called without the admin token");
            return Err(ApiError::Unauthorized("not the admin token"));
        }
        Ok(Admin)
    }
}

/// Defines [`LimitsPatch`]: each field of [`Limits`], optional, with its
/// allowed range.
macro_rules! limits_patch {
    ($($field:ident: $min:expr, $max:expr;)*) => {
        /// A partial change of a tenant's [`Limits`]: the fields given are
        /// range-checked and replaced, the others kept.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct LimitsPatch {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<i64>,
            )*
        }

        impl LimitsPatch {
            /// `limits` with the given fields replaced, or 422 naming the
            /// first field out of its range.
            pub fn apply(&self, mut limits: Limits) -> Result<Limits, ApiError> {
                $(
                    if let Some(value) = self.$field {
                        let (min, max): (i64, i64) = ($min, $max);
                        if !(min..=max).contains(&value) {
                            return Err(ApiError::Unprocessable(format!(
                                "`{}` must be between {min} and {max}",
                                stringify!($field)
                            )));
                        }
                        limits.$field = value.try_into().expect("range checked");
                    }
                )*
                Ok(limits)
            }

            /// No field given.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }
        }
    };
}

const GIB: i64 = 1024 * 1024 * 1024;

limits_patch! {
    connections: 1, 10_000_000;
    publish_rate_msgs: 1, 10_000_000;
    publish_rate_bytes: 1, 10 * GIB;
    client_publish_rate_msgs: 1, 10_000_000;
    client_publish_rate_bytes: 1, 10 * GIB;
    connect_rate: 1, 1_000_000;
    max_packet_size: 16, 268_435_455;
    subscriptions_per_client: 1, 100_000;
    retained_messages: 1, 100_000_000;
    retained_bytes: 1, 1024 * GIB;
    session_expiry_max: 1, u32::MAX as i64;
    queued_messages: 1, 10_000_000;
    inflight: 1, u16::MAX as i64;
    message_log_max_age: 60, 365 * 24 * 3600;
    message_log_max_bytes: 1024, 1024 * GIB;
}

/// Applies `patch` to tenant `tid`'s limits and returns the tenant.
pub async fn set_limits(
    store: &dyn ControlStore,
    tid: &str,
    patch: &LimitsPatch,
) -> Result<Tenant, ApiError> {
    let mut tenant = store
        .tenant(tid)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tenant.limits = patch.apply(tenant.limits)?;
    if !store.set_tenant_limits(tid, &tenant.limits).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tracing::info!(tenant_id = %tid, limits = ?tenant.limits, "tenant limits changed");
    Ok(tenant)
}

/// Sets tenant `tid`'s status ([`STATUS_ACTIVE`] or [`STATUS_SUSPENDED`]).
pub async fn set_status(
    store: &dyn ControlStore,
    tid: &str,
    status: &'static str,
) -> Result<Tenant, ApiError> {
    if !store.set_tenant_status(tid, status).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tracing::info!(tenant_id = %tid, status, "tenant status changed");
    store.tenant(tid).await?.ok_or(ApiError::NotFound("tenant"))
}

/// The tenant object with its owner, as operators see it.
#[derive(Serialize, ToSchema)]
#[schema(as = OperatorTenant)]
pub struct OperatorTenantView {
    #[serde(flatten)]
    tenant: TenantView,
    account_id: Uuid,
}

impl OperatorTenantView {
    fn new(t: Tenant, state: &AppState) -> Self {
        let account_id = t.account_id;
        OperatorTenantView {
            tenant: TenantView::new(t, state.endpoints()),
            account_id,
        }
    }
}

/// Every tenant of every account (operators only: the admin token).
#[utoipa::path(
    get,
    path = "/v1/admin/tenants",
    tag = "admin",
    responses(
        (status = 200, description = "Every tenant, oldest first", body = Vec<OperatorTenantView>),
        (status = 404, description = "Admin routes are disabled (no --admin-token-file)", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn admin_list_tenants(
    State(state): State<AppState>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    let tenants = state.store().all_tenants().await?;
    Ok(Json(
        tenants
            .into_iter()
            .map(|t| OperatorTenantView::new(t, &state))
            .collect::<Vec<_>>(),
    ))
}

/// Change some of a tenant's limits (operators only: the admin token).
#[utoipa::path(
    patch,
    path = "/v1/admin/tenants/{tid}/limits",
    tag = "admin",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = LimitsPatch,
    responses(
        (status = 200, description = "The tenant with its new limits", body = OperatorTenantView),
        (status = 404, description = "No such tenant, or admin routes are disabled (no --admin-token-file)", body = Problem,
         content_type = "application/problem+json"),
        (status = 422, description = "A value out of range or an unknown field", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn admin_set_limits(
    State(state): State<AppState>,
    _: Admin,
    Path(tid): Path<String>,
    ApiJson(patch): ApiJson<LimitsPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = set_limits(state.store(), &tid, &patch).await?;
    Ok(Json(OperatorTenantView::new(tenant, &state)))
}

/// Suspend a tenant (operators only: the admin token).
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tid}/suspend",
    tag = "admin",
    params(("tid" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant, suspended", body = OperatorTenantView),
        (status = 404, description = "No such tenant, or admin routes are disabled (no --admin-token-file)", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn admin_suspend_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(tid): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.recent_changes().changing_status(&tid);
    let tenant = set_status(state.store(), &tid, STATUS_SUSPENDED).await?;
    Ok(Json(OperatorTenantView::new(tenant, &state)))
}

/// Resume a suspended tenant (operators only: the admin token).
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tid}/resume",
    tag = "admin",
    params(("tid" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant, active", body = OperatorTenantView),
        (status = 404, description = "No such tenant, or admin routes are disabled (no --admin-token-file)", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn admin_resume_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(tid): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.recent_changes().changing_status(&tid);
    let tenant = set_status(state.store(), &tid, STATUS_ACTIVE).await?;
    Ok(Json(OperatorTenantView::new(tenant, &state)))
}
