//! The Aerie control plane: REST API v1 for accounts, tenants and tenant API
//! keys, on Postgres or SQLite.
//!
//! Layout:
//! - `api`: the handlers (thin: extract, call the store, map) and their DTOs,
//!   one module per resource (accounts, tenants, api_keys, tokens);
//! - `auth`: passwords (Argon2id), session tokens (HMAC-SHA256), API keys,
//!   and the `Principal` extractor;
//! - `error`: `ApiError` → `application/problem+json`, and `ApiJson`;
//! - `plan`: plans and per-tenant limits;
//! - `store`: the `ControlStore` trait and its SQLite and Postgres implementations.
//!
//! Entry point: [`app`] builds the router from an [`AppState`].

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod error;
pub mod keys;
pub mod plan;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use serde::Serialize;

use crate::auth::SessionKeys;
use crate::keys::Kek;
use crate::store::ControlStore;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where a tenant's clients connect, as shown in the tenant object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub mqtt: String,
    pub mqtts: String,
    pub ws: String,
    pub wss: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub endpoints: Endpoints,
    /// Lifetime of an account session token.
    pub session_ttl: time::Duration,
    /// The `iss` of the tokens the control plane mints: its own URL.
    pub issuer: String,
    /// The key-encryption key of the token signing keys.
    pub secret_key: Kek,
    /// The operator credential of `/v1/admin`; `None`: admin routes disabled.
    pub admin_token: Option<api::admin::AdminToken>,
}

impl Config {
    pub fn new(endpoints: Endpoints, issuer: impl Into<String>, secret_key: Kek) -> Self {
        Config {
            endpoints,
            session_ttl: time::Duration::hours(1),
            issuer: issuer.into(),
            secret_key,
            admin_token: None,
        }
    }
}

/// What every handler shares: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ControlStore>,
    sessions: SessionKeys,
    config: Config,
}

impl AppState {
    /// Loads (or, at first start, generates and stores) the session secret,
    /// and makes sure there is an active token signing key that the
    /// configured secret key decrypts.
    pub async fn new(store: Arc<dyn ControlStore>, config: Config) -> anyhow::Result<Self> {
        let secret = store
            .secret_or_insert(auth::SESSION_SECRET, &auth::new_secret())
            .await?;
        keys::active_signing_key(&*store, &config.secret_key).await?;
        auth::warm_up().await;
        Ok(AppState {
            inner: Arc::new(Inner {
                sessions: SessionKeys::new(&secret, config.session_ttl),
                store,
                config,
            }),
        })
    }

    /// Opens the database at `database_url` (migrating it) and builds the state.
    pub async fn open(database_url: &str, config: Config) -> anyhow::Result<Self> {
        let store = store::open(database_url).await?;
        AppState::new(store, config).await
    }

    pub fn store(&self) -> &dyn ControlStore {
        &*self.inner.store
    }

    pub fn sessions(&self) -> &SessionKeys {
        &self.inner.sessions
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.config.endpoints
    }

    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    pub fn secret_key(&self) -> &Kek {
        &self.inner.config.secret_key
    }

    pub fn admin_token(&self) -> Option<&api::admin::AdminToken> {
        self.inner.config.admin_token.as_ref()
    }
}

/// The control plane's router: REST API v1, `/.well-known/jwks.json`,
/// `/healthz`, `/readyz`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/v1/accounts", post(api::sign_up))
        .route("/v1/sessions", post(api::log_in))
        .route(
            "/v1/tenants",
            get(api::list_tenants).post(api::create_tenant),
        )
        .route(
            "/v1/tenants/{tid}",
            get(api::get_tenant)
                .patch(api::rename_tenant)
                .delete(api::delete_tenant),
        )
        .route(
            "/v1/tenants/{tid}/api-keys",
            get(api::list_api_keys).post(api::create_api_key),
        )
        .route(
            "/v1/tenants/{tid}/api-keys/{key_id}",
            delete(api::revoke_api_key),
        )
        .route("/v1/tenants/{tid}/tokens", post(api::mint_token))
        .route("/v1/tenants/{tid}/tokens/{jti}", delete(api::revoke_token))
        .route("/.well-known/jwks.json", get(api::jwks))
        .route("/v1/admin/tenants", get(api::admin_list_tenants))
        .route(
            "/v1/admin/tenants/{tid}/limits",
            patch(api::admin_set_limits),
        )
        .route(
            "/v1/admin/tenants/{tid}/suspend",
            post(api::admin_suspend_tenant),
        )
        .route(
            "/v1/admin/tenants/{tid}/resume",
            post(api::admin_resume_tenant),
        )
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
