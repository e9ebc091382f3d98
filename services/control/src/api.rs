//! The routes of REST API v1: extract, call the store, map the result.
//! Request and response bodies (DTOs) live here and nowhere else.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiJson};
use crate::keys;
use crate::plan::{FREE_PLAN, Limits};
use crate::store::{self, StoreError};
use crate::{AppState, Endpoints};

use axum::Json;

// ---- accounts and sessions ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    email: String,
    password: String,
}

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Argon2 takes any length; a bound keeps one request from costing much.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Trimmed and lowercased; `None` if it does not look like an address.
pub fn normalise_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(email)
}

#[derive(Serialize)]
struct SignedUp {
    account_id: Uuid,
    token: String,
}

pub async fn sign_up(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let email = normalise_email(&body.email)
        .ok_or_else(|| ApiError::Invalid("email is not a valid address".into()))?;
    if body.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::Invalid(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::Invalid(format!(
            "password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let account = store::Account {
        id: Uuid::new_v4(),
        email,
        password_hash: auth::hash_password(body.password).await?,
        created_at: store::now(),
    };
    match state.store().insert_account(&account).await {
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(
                "an account with this email exists; log in with POST /v1/sessions",
            ));
        }
        other => other?,
    }
    tracing::info!(account_id = %account.id, "account created");
    let token = state
        .sessions()
        .issue(account.id, OffsetDateTime::now_utc());
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            account_id: account.id,
            token,
        }),
    ))
}

#[derive(Serialize)]
struct Session {
    token: String,
}

pub async fn log_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    const WRONG: ApiError = ApiError::Unauthorized("wrong email or password");
    let account = match normalise_email(&body.email) {
        Some(email) => state.store().account_by_email(&email).await?,
        None => None,
    };
    let password = body.password;
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WRONG);
    }
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    if !auth::verify_password(password, hash).await? {
        return Err(WRONG);
    }
    let account = account.ok_or(WRONG)?;
    let token = state
        .sessions()
        .issue(account.id, OffsetDateTime::now_utc());
    Ok(Json(Session { token }))
}

// ---- tenants ----

#[derive(Serialize)]
pub struct TenantView {
    id: String,
    name: String,
    plan: String,
    limits: Limits,
    status: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    endpoints: Endpoints,
}

impl TenantView {
    fn new(t: store::Tenant, endpoints: &Endpoints) -> Self {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    name: String,
}

const MAX_NAME_CHARS: usize = 100;

/// Trimmed; 1 to 100 characters, no control characters. Stored verbatim otherwise.
fn valid_name(name: &str) -> Result<String, ApiError> {
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
        Principal::Account(_) => true,
    };
    let tenant = match visible {
        true => state.store().tenant(tid).await?,
        false => None,
    };
    match (tenant, who) {
        (Some(t), Principal::Account(account)) if t.account_id == *account => Ok(t),
        (Some(t), Principal::ApiKey { .. }) => Ok(t),
        _ => Err(ApiError::NotFound("tenant")),
    }
}

/// The tenant named by `{tid}` in the path, if the caller may see it;
/// otherwise the request ends with 401 (no credentials) or 404.
pub struct VisibleTenant {
    who: Principal,
    tenant: store::Tenant,
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

fn account_only(who: &Principal, what: &'static str) -> Result<Uuid, ApiError> {
    match who {
        Principal::Account(id) => Ok(*id),
        Principal::ApiKey { .. } => Err(ApiError::Forbidden(what)),
    }
}

pub async fn list_tenants(
    State(state): State<AppState>,
    who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let tenants = match &who {
        Principal::Account(account) => state.store().tenants_of(*account).await?,
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

pub async fn create_tenant(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<TenantBody>,
) -> Result<impl IntoResponse, ApiError> {
    let account_id = account_only(&who, "API keys cannot create tenants; use a session token")?;
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

pub async fn get_tenant(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
) -> Json<TenantView> {
    Json(TenantView::new(tenant, state.endpoints()))
}

pub async fn rename_tenant(
    State(state): State<AppState>,
    VisibleTenant { mut tenant, .. }: VisibleTenant,
    ApiJson(body): ApiJson<TenantBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = valid_name(&body.name)?;
    if !state.store().rename_tenant(&tenant.id, &name).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tenant.name = name;
    Ok(Json(TenantView::new(tenant, state.endpoints())))
}

pub async fn delete_tenant(
    State(state): State<AppState>,
    VisibleTenant { who, tenant }: VisibleTenant,
) -> Result<impl IntoResponse, ApiError> {
    account_only(&who, "API keys cannot delete tenants; use a session token")?;
    if !state.store().delete_tenant(&tenant.id).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tracing::info!(tenant_id = %tenant.id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- tenant API keys ----

#[derive(Serialize)]
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

pub async fn create_api_key(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
    ApiJson(body): ApiJson<TenantBody>,
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

pub async fn list_api_keys(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
) -> Result<impl IntoResponse, ApiError> {
    let keys = state.store().api_keys_of(&tenant.id).await?;
    Ok(Json(
        keys.into_iter().map(ApiKeyView::from).collect::<Vec<_>>(),
    ))
}

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

// ---- device and browser tokens ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    client_id: Option<String>,
    #[serde(rename = "pub")]
    publish: Option<Vec<String>>,
    #[serde(rename = "sub")]
    subscribe: Option<Vec<String>>,
    ttl_seconds: Option<i64>,
}

#[derive(Serialize)]
struct Minted {
    token: String,
    jti: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

const MAX_CLIENT_ID_BYTES: usize = 256;
const MAX_FILTERS: usize = 100;
const MAX_FILTER_BYTES: usize = 1024;
/// What a filter may name besides topic levels; the gateway substitutes them.
const PLACEHOLDERS: [&str; 2] = ["${client_id}", "${sub}"];

fn valid_filters(list: Option<Vec<String>>, field: &str) -> Result<Vec<String>, ApiError> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_FILTERS {
        return Err(ApiError::Unprocessable(format!(
            "`{field}` has more than {MAX_FILTERS} filters"
        )));
    }
    for filter in &list {
        let bad = |why: String| {
            ApiError::Unprocessable(format!("`{field}` filter {filter:?} is not valid: {why}"))
        };
        if filter.len() > MAX_FILTER_BYTES {
            return Err(bad(format!("longer than {MAX_FILTER_BYTES} bytes")));
        }
        let mut rest = filter.clone();
        for placeholder in PLACEHOLDERS {
            rest = rest.replace(placeholder, "x");
        }
        if rest.contains("${") {
            return Err(bad(
                "the only placeholders are ${client_id} and ${sub}".into()
            ));
        }
        aerie_proto::topic::validate_topic_filter(filter).map_err(|e| bad(format!("{e:?}")))?;
    }
    Ok(list)
}

pub async fn mint_token(
    State(state): State<AppState>,
    VisibleTenant { who, tenant }: VisibleTenant,
    ApiJson(body): ApiJson<MintBody>,
) -> Result<impl IntoResponse, ApiError> {
    let ttl = match body.ttl_seconds {
        None => keys::DEFAULT_TOKEN_TTL,
        Some(s) => time::Duration::seconds(s),
    };
    if ttl < keys::MIN_TOKEN_TTL || ttl > keys::MAX_TOKEN_TTL {
        return Err(ApiError::Unprocessable(format!(
            "ttl_seconds must be between {} and {}",
            keys::MIN_TOKEN_TTL.whole_seconds(),
            keys::MAX_TOKEN_TTL.whole_seconds()
        )));
    }
    if let Some(id) = &body.client_id
        && (id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES || id.chars().any(char::is_control))
    {
        return Err(ApiError::Unprocessable(format!(
            "client_id must have 1 to {MAX_CLIENT_ID_BYTES} bytes and no control characters"
        )));
    }
    let restricted = body.publish.is_some() || body.subscribe.is_some();
    let acl = keys::Acl {
        publish: valid_filters(body.publish, "pub")?,
        subscribe: valid_filters(body.subscribe, "sub")?,
    };
    let sub = match (&body.client_id, &who) {
        (Some(id), _) => id.clone(),
        (None, Principal::ApiKey { key_id, .. }) => format!("api-key:{key_id}"),
        (None, Principal::Account(id)) => format!("account:{id}"),
    };
    let now = store::now();
    let now = now.replace_nanosecond(0).expect("zero nanoseconds");
    let expires_at = now + ttl;
    let claims = keys::Claims {
        iss: state.issuer().to_owned(),
        aud: keys::AUDIENCE.to_owned(),
        sub,
        tnt: tenant.id.clone(),
        iat: now.unix_timestamp(),
        exp: expires_at.unix_timestamp(),
        jti: keys::new_random_id(16),
        client_id: body.client_id,
        acl: restricted.then_some(acl),
    };
    let key = keys::active_signing_key(state.store(), state.secret_key()).await?;
    let token = key.sign_jwt(&claims);
    state
        .store()
        .insert_issued_token(&store::IssuedToken {
            jti: claims.jti.clone(),
            tenant_id: tenant.id.clone(),
            subject: claims.sub.clone(),
            issued_at: now,
            expires_at,
        })
        .await?;
    tracing::info!(tenant_id = %tenant.id, jti = %claims.jti, kid = %key.kid, "token minted");
    Ok((
        StatusCode::CREATED,
        Json(Minted {
            token,
            jti: claims.jti,
            expires_at,
        }),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    VisibleTenant { tenant, .. }: VisibleTenant,
    Path((_, jti)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    if !state
        .store()
        .revoke_token(&tenant.id, &jti, store::now())
        .await?
    {
        return Err(ApiError::NotFound("token"));
    }
    tracing::info!(tenant_id = %tenant.id, %jti, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `/.well-known/jwks.json`: the public keys that verify the tokens minted here.
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(keys::jwks(state.store(), store::now()).await?))
}

// ---- health ----

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
