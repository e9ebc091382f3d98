//! The Aerie control plane: REST API v1 for accounts, tenants and tenant API
//! keys, on Postgres or SQLite.
//!
//! Layout:
//! - `api`: the handlers (thin: extract, call the store, map) and their DTOs,
//!   one module per resource (accounts, tenants, api_keys, tokens);
//! - `bootstrap`: a deployment's first account API key, chosen by whoever starts it;
//! - `broker`: the `BrokerPort` trait, the broker as the REST API sees it;
//! - `console`: the built web console, served on every path the API does not own;
//! - `auth`: passwords (Argon2id), API keys, and the `Principal` extractor
//!   (a bearer token or the console's session cookie);
//! - `session`: account sessions (HMAC-SHA256 tokens naming a stored row,
//!   which log-out deletes) and their CSRF tokens; `cookie`: the console's
//!   session cookie; `csrf`: the checks on requests that cookie authenticates;
//! - `error`: `ApiError` → `application/problem+json`, and `ApiJson`;
//! - `plan`: plans and per-tenant limits;
//! - `openapi`: the OpenAPI 3.1 document, built from the same declarations
//!   as the router (`/v1/openapi.json`);
//! - `ratelimit`: per-IP limits on sign-up and log-in, and (`login_backoff`)
//!   the per-email back-off after failed log-ins;
//! - `scopes`: what a tenant API key may do;
//! - `store`: the `ControlStore` trait and its SQLite and Postgres implementations.
//!
//! Entry point: [`app`] builds the router from an [`AppState`].

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod broker;
pub mod change_traces;
pub mod console;
pub mod cookie;
pub mod csrf;
pub mod error;
pub mod keys;
pub mod login_backoff;
pub mod openapi;
pub mod plan;
pub mod ratelimit;
pub mod readiness_log;
pub mod scopes;
pub mod session;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::Serialize;
use utoipa::ToSchema;

use crate::broker::BrokerPort;
use crate::console::Console;
use crate::cookie::SessionCookie;
use crate::keys::Kek;
use crate::login_backoff::BackoffPolicy;
use crate::ratelimit::{AuthLimiter, RateLimit};
use crate::session::SessionKeys;
use crate::store::ControlStore;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where a tenant's clients connect, as shown in the tenant object: only the
/// listeners that are served (or that the operator named with `--public-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Endpoints {
    pub mqtt: String,
    /// MQTT over TLS; absent when TLS is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtts: Option<String>,
    pub ws: String,
    /// MQTT over secure WebSocket; absent when TLS is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wss: Option<String>,
}

impl Endpoints {
    /// The WebSocket endpoints shown (the console's CSP allows them).
    pub fn websockets(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.ws.as_str()).chain(self.wss.as_deref())
    }
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
    /// Sign-up and log-in attempts per client IP.
    pub auth_rate_per_ip: RateLimit,
    /// The back-off of an email (known or not) after failed log-ins.
    pub auth_backoff_per_email: BackoffPolicy,
    /// The operator credential of `/v1/admin`; `None`: admin routes disabled.
    pub admin_token: Option<api::admin::AdminToken>,
    /// The built web console served at `/`; `None`: no console (every path
    /// outside the API is the 404 problem).
    pub console_dir: Option<PathBuf>,
}

impl Config {
    pub fn new(endpoints: Endpoints, issuer: impl Into<String>, secret_key: Kek) -> Self {
        Config {
            endpoints,
            session_ttl: time::Duration::hours(1),
            issuer: issuer.into(),
            secret_key,
            auth_rate_per_ip: RateLimit::PER_IP,
            auth_backoff_per_email: BackoffPolicy::DEFAULT,
            admin_token: None,
            console_dir: None,
        }
    }
}

/// What every handler shares: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The broker the live-state routes act on; none in `aerie control`.
    broker: Option<Arc<dyn BrokerPort>>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ControlStore>,
    sessions: SessionKeys,
    session_cookie: SessionCookie,
    auth_limits: AuthLimiter,
    console: Option<Console>,
    config: Config,
    recent_changes: change_traces::RecentChanges,
}

impl AppState {
    /// Loads (or, at first start, generates and stores) the session secret,
    /// and makes sure there is an active token signing key that the
    /// configured secret key decrypts.
    pub async fn new(store: Arc<dyn ControlStore>, config: Config) -> anyhow::Result<Self> {
        let secret = store
            .secret_or_insert(session::SESSION_SECRET, &auth::new_secret())
            .await?;
        keys::active_signing_key(&*store, &config.secret_key).await?;
        auth::warm_up().await;
        Ok(AppState {
            inner: Arc::new(Inner {
                sessions: SessionKeys::new(&secret, config.session_ttl),
                session_cookie: SessionCookie::for_issuer(&config.issuer),
                auth_limits: AuthLimiter::new(
                    config.auth_rate_per_ip,
                    config.auth_backoff_per_email,
                ),
                console: config
                    .console_dir
                    .clone()
                    .map(|dir| Console::new(dir, &config.endpoints)),
                store,
                config,
                recent_changes: Default::default(),
            }),
            broker: None,
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

    /// The traces of recent changes that gateways enforce.
    pub fn recent_changes(&self) -> &change_traces::RecentChanges {
        &self.inner.recent_changes
    }

    pub fn sessions(&self) -> &SessionKeys {
        &self.inner.sessions
    }

    /// The console's session cookie (Secure when `issuer` is https).
    pub fn session_cookie(&self) -> SessionCookie {
        self.inner.session_cookie
    }

    pub fn auth_limits(&self) -> &AuthLimiter {
        &self.inner.auth_limits
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

    /// The same state with `broker` attached: the routes on clients,
    /// messages and retained messages act on it instead of answering 503.
    pub fn with_broker(self, broker: Arc<dyn BrokerPort>) -> Self {
        AppState {
            broker: Some(broker),
            ..self
        }
    }

    pub fn broker(&self) -> Option<&dyn BrokerPort> {
        self.broker.as_deref()
    }

    pub fn console(&self) -> Option<&Console> {
        self.inner.console.as_ref()
    }

    pub fn admin_token(&self) -> Option<&api::admin::AdminToken> {
        self.inner.config.admin_token.as_ref()
    }
}

/// The control plane's router: REST API v1, `/v1/openapi.json`,
/// `/.well-known/jwks.json`, `/healthz`, `/readyz`. Every route comes from
/// [`api::routes`], which also makes the OpenAPI document: nothing is served
/// that the document does not describe. Any other path is the web console
/// (if configured) or the 404 problem.
pub fn app(state: AppState) -> Router {
    let (router, _) = api::routes().split_for_parts();
    router
        .fallback(console::fallback)
        .method_not_allowed_fallback(api::no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes. Each request
/// carries its TCP peer (`ConnectInfo<SocketAddr>`) for the rate limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
