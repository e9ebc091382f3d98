//! Account API keys: credentials for machines acting as an account (a
//! Terraform provider, a pipeline). Made, hashed and checked as tenant API
//! keys are (`auth`); such a key is accepted wherever a session token is, but
//! only a session token manages them, so a leaked key cannot mint itself
//! successors or delete the owner's other keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::{NameBody, valid_name};
use crate::AppState;
use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiJson, Problem};
use crate::store::{self, ControlStore, StoreError};

/// The Prometheus counter of requests to manage account API keys refused
/// because they did not come with a session token, by `credential`.
pub const KEY_MANAGEMENT_REFUSED_TOTAL: &str = "aerie_control_account_key_management_refused_total";

/// At most this many keys per account: each is checked on every request
/// that carries it, and nobody needs more to tell their machines apart.
pub const MAX_ACCOUNT_API_KEYS: usize = 100;

/// An account API key (its secret only in the answer to its creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountApiKeyView {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `aerie_acct_…`: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<store::AccountApiKey> for AccountApiKeyView {
    fn from(k: store::AccountApiKey) -> Self {
        AccountApiKeyView {
            id: k.id,
            name: k.name,
            created_at: k.created_at,
            key: None,
        }
    }
}

/// The account of a person's session token; 403 (counted) for any API key.
fn session_account(who: &Principal) -> Result<Uuid, ApiError> {
    let credential = match who {
        Principal::Account { id, key: None } => return Ok(*id),
        Principal::Account { key: Some(_), .. } => "account_api_key",
        Principal::ApiKey { .. } => "tenant_api_key",
    };
    metrics::counter!(KEY_MANAGEMENT_REFUSED_TOTAL, "credential" => credential).increment(1);
    tracing::info!(
        credential,
        "account API key management refused: not a session token"
    );
    Err(ApiError::Forbidden(
        "account API keys are managed with a session token only (log in), not with an API key"
            .into(),
    ))
}

/// Creates a key named `name` (checked as a tenant's name is) for
/// `account_id`: the REST route and `aerie account api-key create` on a local
/// database both come here. The answer holds the key, which is not kept.
pub async fn create(
    store: &dyn ControlStore,
    account_id: Uuid,
    name: &str,
) -> Result<AccountApiKeyView, ApiError> {
    let name = valid_name(name)?;
    if store.account_api_keys_of(account_id).await?.len() >= MAX_ACCOUNT_API_KEYS {
        return Err(ApiError::Conflict(
            "this account has 100 API keys, the most it may; delete one first",
        ));
    }
    let secret = auth::new_account_api_key();
    let key = store::AccountApiKey {
        id: Uuid::new_v4(),
        account_id,
        name,
        created_at: store::now(),
    };
    match store
        .insert_account_api_key(&key, &auth::api_key_hash(&secret))
        .await
    {
        // 190 random bits: a taken hash is not worth a retry loop.
        Err(StoreError::Conflict) => Err(anyhow::anyhow!("account API key collision").into()),
        other => other.map_err(ApiError::from),
    }?;
    tracing::info!(%account_id, key_id = %key.id, "account API key created");
    Ok(AccountApiKeyView {
        key: Some(secret),
        ..AccountApiKeyView::from(key)
    })
}

/// Deletes the account's key `id` (a UUID): 404 if the account has none.
pub async fn delete(store: &dyn ControlStore, account_id: Uuid, id: &str) -> Result<(), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("account API key"))?;
    if !store.delete_account_api_key(account_id, id).await? {
        return Err(ApiError::NotFound("account API key"));
    }
    tracing::info!(%account_id, key_id = %id, "account API key deleted");
    Ok(())
}

/// Create an account API key.
///
/// The key (`aerie_acct_…`) is in this answer only: it is stored as a hash.
/// It is accepted wherever a session token is (every tenant of the account),
/// except on these routes. Needs a session token.
#[utoipa::path(
    post,
    path = "/v1/account/api-keys",
    tag = "account-api-keys",
    request_body = NameBody,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = AccountApiKeyView),
        (status = 400, description = "The name is empty, too long or has control characters",
         body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a session token: API keys cannot manage account API keys",
         body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account has 100 API keys already",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create_account_api_key(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let account_id = session_account(&who)?;
    let view = create(state.store(), account_id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// List the account's API keys, oldest first (without their secrets).
#[utoipa::path(
    get,
    path = "/v1/account/api-keys",
    tag = "account-api-keys",
    responses(
        (status = 200, description = "The keys, without their secrets", body = Vec<AccountApiKeyView>),
        (status = 403, description = "Not a session token: API keys cannot manage account API keys",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_account_api_keys(
    State(state): State<AppState>,
    who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let account_id = session_account(&who)?;
    let keys = state.store().account_api_keys_of(account_id).await?;
    Ok(Json(
        keys.into_iter()
            .map(AccountApiKeyView::from)
            .collect::<Vec<_>>(),
    ))
}

/// Delete an account API key: requests with it get 401 from now on. What it
/// made (tenants, their keys and tokens) stays: it belongs to the account.
#[utoipa::path(
    delete,
    path = "/v1/account/api-keys/{key_id}",
    tag = "account-api-keys",
    params(("key_id" = String, Path, description = "Account API key id (a UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a session token: API keys cannot manage account API keys",
         body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account has no such key",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_account_api_key(
    State(state): State<AppState>,
    who: Principal,
    Path(key_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account_id = session_account(&who)?;
    delete(state.store(), account_id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
