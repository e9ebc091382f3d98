//! Device and browser tokens: mint a JWT, revoke by `jti`, publish the JWKS.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::TenantWith;
use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::keys::{self, Kek};
use crate::scopes::need;
use crate::store::{self, ControlStore};

/// What a device or browser token allows (the body of
/// `POST /v1/tenants/{tid}/tokens`). Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// The only MQTT client id the token may connect with (1 to 256 bytes);
    /// also the token's `sub`. Any client id if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Topic filters the token may publish to (at most 100; `${client_id}`
    /// and `${sub}` are substituted). With neither `pub` nor `sub`, the token
    /// carries no ACL.
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Topic filters the token may subscribe to (as `pub`).
    #[serde(rename = "sub", skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Lifetime, 60 to 2592000 seconds; 3600 if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// A minted token and what identifies it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Minted {
    /// The JWT (EdDSA), for the MQTT password field.
    pub token: String,
    /// The token's id, to revoke it.
    pub jti: String,
    /// When the token stops verifying.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
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
/// Mint a device or browser token (a JWT for the MQTT password field).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/tokens",
    tag = "tokens",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = MintBody,
    responses(
        (status = 201, description = "Minted", body = Minted),
        (status = 422, description = "ttl_seconds out of bounds, a bad client_id or a bad topic filter",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn mint_token(
    State(state): State<AppState>,
    TenantWith { who, tenant, .. }: TenantWith<need::Tokens>,
    ApiJson(body): ApiJson<MintBody>,
) -> Result<impl IntoResponse, ApiError> {
    let subject = match &who {
        Principal::ApiKey { key_id, .. } => format!("api-key:{key_id}"),
        Principal::Account { id, .. } => format!("account:{id}"),
    };
    let minted = mint(
        state.store(),
        state.issuer(),
        state.secret_key(),
        &tenant.id,
        body,
        subject,
        who.api_key(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(minted)))
}

/// Mints a token of tenant `tenant_id` as `body` asks (the REST route and
/// `aerie token mint` on a local data dir both come here). `subject` is the
/// `sub` claim when `body` names no `client_id`; `minted_by` the API key
/// acting, whose revocation revokes the token.
pub async fn mint(
    store: &dyn ControlStore,
    issuer: &str,
    secret_key: &Kek,
    tenant_id: &str,
    body: MintBody,
    subject: String,
    minted_by: Option<Uuid>,
) -> Result<Minted, ApiError> {
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
    let sub = body.client_id.clone().unwrap_or(subject);
    let now = store::now();
    let now = now.replace_nanosecond(0).expect("zero nanoseconds");
    let expires_at = now + ttl;
    let claims = keys::Claims {
        iss: issuer.to_owned(),
        aud: keys::AUDIENCE.to_owned(),
        sub,
        tnt: tenant_id.to_owned(),
        iat: now.unix_timestamp(),
        exp: expires_at.unix_timestamp(),
        jti: keys::new_random_id(16),
        client_id: body.client_id,
        acl: restricted.then_some(acl),
    };
    let key = keys::active_signing_key(store, secret_key).await?;
    let token = key.sign_jwt(&claims);
    store
        .insert_issued_token(&store::IssuedToken {
            jti: claims.jti.clone(),
            tenant_id: tenant_id.to_owned(),
            subject: claims.sub.clone(),
            issued_at: now,
            expires_at,
            minted_by,
        })
        .await?;
    tracing::info!(tenant_id, jti = %claims.jti, kid = %key.kid, "token minted");
    Ok(Minted {
        token,
        jti: claims.jti,
        expires_at,
    })
}
/// The most tokens `GET /v1/tenants/{tid}/tokens` lists.
pub const MAX_LISTED_TOKENS: usize = 200;

/// A minted token as the list shows it: never the token itself (not kept).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The token's id, to revoke it.
    pub jti: String,
    /// The token's `sub`: its `client_id` if it was minted for one, else who
    /// minted it (`account:<id>` or `api-key:<id>`).
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// When the token stops verifying.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Revoked: the broker refuses it (until it expires).
    pub revoked: bool,
}

impl From<store::TokenEntry> for TokenView {
    fn from(e: store::TokenEntry) -> Self {
        TokenView {
            jti: e.jti,
            subject: e.subject,
            issued_at: e.issued_at,
            expires_at: e.expires_at,
            revoked: e.revoked,
        }
    }
}

/// List the tenant's minted tokens, newest first (at most 200), expired and
/// revoked ones included.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/tokens",
    tag = "tokens",
    params(("tid" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tokens, without the tokens themselves",
               body = Vec<TokenView>)),
    security(("bearer" = [])),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Tokens>,
) -> Result<impl IntoResponse, ApiError> {
    let tokens = state
        .store()
        .tokens_of(&tenant.id, MAX_LISTED_TOKENS)
        .await?;
    Ok(Json(
        tokens.into_iter().map(TokenView::from).collect::<Vec<_>>(),
    ))
}

/// Revoke a token by its `jti`: the broker refuses it (and disconnects the
/// clients using it) until it expires.
///
/// A jti the control plane minted for this tenant, or, if the tenant has
/// registered issuers, a jti of its own tokens: that revocation holds for 30
/// days (the longest lifetime of a token minted here), in this tenant only.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/tokens/{jti}",
    tag = "tokens",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("jti" = String, Path, description = "The token's `jti`"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such tenant, or the tenant has no such token (and no issuer of \
         its own) or revoked it already",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The jti is longer than 256 bytes or has control characters",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Tokens>,
    Path((_, jti)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_jti(&jti)?;
    state.recent_changes().revoking(&tenant.id, &jti);
    revoke(state.store(), &tenant.id, &jti).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One minted token of the tenant by its `jti`: whether it is revoked and
/// when it expires (never the token itself, which is not kept). The list
/// shows only the newest 200; a client that tracks one token (the Terraform
/// provider) asks for it here.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/tokens/{jti}",
    tag = "tokens",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("jti" = String, Path, description = "The token's `jti`"),
    ),
    responses(
        (status = 200, description = "The token, without the token itself", body = TokenView),
        (status = 404, description = "No such tenant, or the tenant minted no such token",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The jti is longer than 256 bytes or has control characters",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_token(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Tokens>,
    Path((_, jti)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    check_jti(&jti)?;
    let entry = state.store().token(&tenant.id, &jti).await?;
    let entry = entry.ok_or(ApiError::NotFound("token"))?;
    Ok(Json(TokenView::from(entry)))
}

/// The longest jti accepted for revocation.
const MAX_JTI_BYTES: usize = 256;

/// Revokes tenant `tenant_id`'s token `jti` (the REST route and `aerie token
/// revoke` on a local data dir both come here); 404 if it has no such token
/// (nor an issuer of its own that could have made it) or it is revoked already.
pub async fn revoke(store: &dyn ControlStore, tenant_id: &str, jti: &str) -> Result<(), ApiError> {
    check_jti(jti)?;
    let now = store::now();
    // The tenant's own issuers choose their jtis and expiries, which are not
    // known here: such a revocation is kept as long as any token minted here lives.
    let foreign_until = match store.issuers_of(tenant_id).await?.is_empty() {
        true => None,
        false => Some(now + keys::MAX_TOKEN_TTL),
    };
    if !store
        .revoke_token(tenant_id, jti, now, foreign_until)
        .await?
    {
        return Err(ApiError::NotFound("token"));
    }
    tracing::info!(tenant_id, %jti, "token revoked");
    Ok(())
}

/// A `jti` from a path: 1 to [`MAX_JTI_BYTES`] bytes, no control characters.
fn check_jti(jti: &str) -> Result<(), ApiError> {
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES || jti.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "jti must have 1 to {MAX_JTI_BYTES} bytes and no control characters"
        )));
    }
    Ok(())
}

/// The public keys that verify the tokens minted here (JWKS).
///
/// Active keys and keys retired less than the longest token lifetime ago.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses(
        (status = 200, description = "The JSON Web Key Set", body = keys::Jwks),
        (status = 500, description = "The database does not answer", body = Problem,
         content_type = "application/problem+json"),
    ),
)]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(keys::jwks(state.store(), store::now()).await?))
}
