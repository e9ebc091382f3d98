//! The routes of REST API v1: extract, call the store, map the result.
//! Request and response bodies (DTOs) live beside their handlers, one module
//! per resource.

pub mod account_keys;
mod accounts;
pub mod admin;
mod api_keys;
mod broker;
mod issuers;
mod sessions;
mod tenants;
mod tokens;
mod usage;

pub use accounts::{MIN_PASSWORD_CHARS, log_in, normalise_email, sign_up};
pub use admin::{admin_list_tenants, admin_resume_tenant, admin_set_limits, admin_suspend_tenant};
pub use api_keys::{create_api_key, list_api_keys, revoke_api_key};
pub use issuers::{delete_issuer, list_issuers, register_issuer};
pub use tenants::{
    TenantWith, VisibleTenant, create_tenant, delete_tenant, get_tenant, list_tenants,
    rename_tenant,
};
pub use tokens::{
    MintBody, Minted, TokenView, jwks, list_tokens, mint, mint_token, revoke, revoke_token,
};

use axum::extract::State;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::openapi::{self, ApiDoc};

/// Every route of the control plane, each with its OpenAPI operation: the
/// router and the document are both made from this list, one `routes!` per
/// path. A route added here is documented by its `#[utoipa::path]`; a route
/// added any other way would be missing from the document (the tests look).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(tokens::jwks))
        .routes(routes!(accounts::sign_up))
        .routes(routes!(accounts::log_in))
        .routes(routes!(sessions::log_out))
        .routes(routes!(sessions::get_account))
        .routes(routes!(
            account_keys::list_account_api_keys,
            account_keys::create_account_api_key
        ))
        .routes(routes!(account_keys::delete_account_api_key))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(
            tenants::get_tenant,
            tenants::rename_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(tokens::list_tokens, tokens::mint_token))
        .routes(routes!(tokens::get_token, tokens::revoke_token))
        .routes(routes!(issuers::list_issuers, issuers::register_issuer))
        .routes(routes!(issuers::delete_issuer))
        .routes(routes!(admin::admin_list_tenants))
        .routes(routes!(admin::admin_set_limits))
        .routes(routes!(admin::admin_suspend_tenant))
        .routes(routes!(admin::admin_resume_tenant))
        .routes(routes!(broker::list_clients))
        .routes(routes!(broker::disconnect_client))
        .routes(routes!(broker::publish))
        .routes(routes!(broker::retained))
        .routes(routes!(usage::usage))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain",
               example = "ok\n")),
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and the broker (where one is attached)
/// can make what it acknowledges durable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain",
         example = "ready\n"),
        (status = 500, description = "The database does not answer", body = Problem,
         content_type = "application/problem+json"),
        (status = 503, description = "The broker's store is failing", body = Problem,
         content_type = "application/problem+json"),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    static CHANGES: crate::readiness_log::ReadinessLog = crate::readiness_log::ReadinessLog::new();
    state.store().ping().await?;
    let unready = state.broker().and_then(|b| b.unready());
    CHANGES.observe(unready.as_deref().map_or(Ok(()), Err));
    match unready {
        Some(why) => Err(ApiError::Unavailable(why)),
        None => Ok("ready\n"),
    }
}

pub async fn no_route() -> ApiError {
    ApiError::NotFound("route")
}

pub async fn no_method() -> ApiError {
    ApiError::Body {
        status: StatusCode::METHOD_NOT_ALLOWED,
        detail: "method not allowed on this route".into(),
    }
}
