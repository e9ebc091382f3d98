//! The routes of REST API v1: extract, call the store, map the result.
//! Request and response bodies (DTOs) live beside their handlers, one module
//! per resource.

mod accounts;
pub mod admin;
mod api_keys;
mod tenants;
mod tokens;

pub use accounts::{MIN_PASSWORD_CHARS, log_in, normalise_email, sign_up};
pub use admin::{admin_list_tenants, admin_resume_tenant, admin_set_limits, admin_suspend_tenant};
pub use api_keys::{create_api_key, list_api_keys, revoke_api_key};
pub use tenants::{
    VisibleTenant, create_tenant, delete_tenant, get_tenant, list_tenants, rename_tenant,
};
pub use tokens::{MintBody, Minted, jwks, mint, mint_token, revoke, revoke_token};

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::error::ApiError;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store().ping().await?;
    Ok("ready\n")
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
