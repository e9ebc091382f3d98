//! Credentials: password hashing, API keys, and the [`Principal`] a request
//! acts as (account session tokens and their cookie: `session.rs`, `cookie.rs`).

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use aws_lc_rs::digest;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::Rng;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::scopes::{Scope, Scopes};
use crate::{csrf, session};

/// Who a request acts as, from its `Authorization: Bearer` header or the
/// console's session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An account: sees the tenants it owns. `key` is the account API key
    /// acting (`None`: a person's session token), which may do all a session
    /// may but manage account API keys.
    Account { id: Uuid, key: Option<Uuid> },
    /// A tenant API key: sees that tenant only, and does what its scopes allow.
    ApiKey {
        tenant_id: String,
        key_id: Uuid,
        scopes: Scopes,
    },
}

impl Principal {
    /// The API key acting (`None`: a person): what it makes (keys, tokens,
    /// issuers) records it, so that revoking it revokes them.
    pub fn api_key(&self) -> Option<Uuid> {
        match self {
            Principal::ApiKey { key_id, .. } => Some(*key_id),
            Principal::Account { .. } => None,
        }
    }

    /// What the caller may do on a tenant it sees: a person everything.
    pub fn scopes(&self) -> Scopes {
        match self {
            Principal::Account { .. } => Scopes::all(),
            Principal::ApiKey { scopes, .. } => *scopes,
        }
    }

    /// 403 naming the scope if the caller lacks it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes().contains(scope) {
            return Ok(());
        }
        crate::scopes::count_refusal(scope);
        Err(ApiError::Forbidden(
            format!("this API key lacks the `{}` scope", scope.name()).into(),
        ))
    }
}

/// Who a request acts as, and the session it carries when a person's session
/// token or the console's cookie authenticates it (what `GET /v1/account`
/// and log-out need).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub session: Option<session::Live>,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Caller::from_request_parts(parts, state).await?.principal)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// `Authorization: Bearer` first (it needs no CSRF check: a browser never
    /// adds it by itself), else the session cookie, checked against CSRF
    /// when the request may change something.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let now = OffsetDateTime::now_utc();
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            let token =
                state
                    .session_cookie()
                    .read(&parts.headers)
                    .ok_or(ApiError::Unauthorized(
                        "missing Authorization: Bearer header (or session cookie)",
                    ))?;
            let changing = csrf::is_state_changing(&parts.method);
            if changing {
                csrf::check_origin(&parts.headers)?;
            }
            let live = session::live(state, token, now)
                .await?
                .ok_or(ApiError::Unauthorized(
                    "invalid, expired or ended session cookie: log in again",
                ))?;
            if changing {
                csrf::check_token(&parts.headers, state.sessions(), live.id)?;
            }
            return Ok(Caller::signed_in(live));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token or API key>`",
            ))?;
        if token.starts_with(ACCOUNT_API_KEY_PREFIX) {
            let key = state
                .store()
                .account_api_key_by_hash(&api_key_hash(token))
                .await?
                .ok_or(ApiError::Unauthorized("unknown or deleted account API key"))?;
            Ok(Caller::key(Principal::Account {
                id: key.account_id,
                key: Some(key.id),
            }))
        } else if token.starts_with(API_KEY_PREFIX) {
            let key = state
                .store()
                .api_key_by_hash(&api_key_hash(token))
                .await?
                .ok_or(ApiError::Unauthorized("unknown or revoked API key"))?;
            Ok(Caller::key(Principal::ApiKey {
                tenant_id: key.tenant_id,
                key_id: key.id,
                scopes: key.scopes,
            }))
        } else {
            let live = session::live(state, token, now)
                .await?
                .ok_or(ApiError::Unauthorized(
                    "invalid, expired or ended session token: log in again",
                ))?;
            Ok(Caller::signed_in(live))
        }
    }
}

impl Caller {
    fn signed_in(live: session::Live) -> Self {
        Caller {
            principal: Principal::Account {
                id: live.account,
                key: None,
            },
            session: Some(live),
        }
    }

    fn key(principal: Principal) -> Self {
        Caller {
            principal,
            session: None,
        }
    }
}

// ---- passwords ----

/// Hashes with Argon2id (default parameters) off the async threads.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

/// A hash of a password nobody knows: unknown emails are verified against it,
/// so a log-in takes as long whether or not the account exists.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let password: [u8; 16] = rand::rng().random();
    Argon2::default()
        .hash_password(&password)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Computes the dummy hash now rather than on the first failed log-in.
pub async fn warm_up() {
    let _ = tokio::task::spawn_blocking(|| DUMMY_HASH.len()).await;
}

/// Checks `password` against `hash`, or against the dummy hash when there is
/// no account, off the async threads. Equal work either way.
pub async fn verify_password(password: String, hash: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok();
        ok && known
    })
    .await
    .map_err(Into::into)
}

/// A fresh random secret (the session signing key, the admin token's HMAC key).
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    rand::rng().fill(&mut secret[..]);
    secret
}

// ---- tenant API keys ----

pub const API_KEY_PREFIX: &str = "aerie_";
/// Account API keys: never a tenant key's prefix, whose random part has no `_`.
pub const ACCOUNT_API_KEY_PREFIX: &str = "aerie_acct_";

/// A new tenant API key: the prefix and 32 random base62 characters (~190 bits).
pub fn new_api_key() -> String {
    random_key(API_KEY_PREFIX)
}

/// A new account API key, made and hashed as a tenant key is.
pub fn new_account_api_key() -> String {
    random_key(ACCOUNT_API_KEY_PREFIX)
}

fn random_key(prefix: &str) -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

/// What is stored of an API key (tenant or account). The key is random and long, so a fast hash
/// is enough (nothing to brute-force), and lookups stay cheap on every request.
pub fn api_key_hash(key: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, key.as_bytes())
        .as_ref()
        .to_vec()
}

/// A new tenant id: 10 characters of `[a-z0-9]`, safe in URLs and hostnames.
pub fn new_tenant_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys_have_their_shape() {
        let id = new_tenant_id();
        assert_eq!(id.len(), 10);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        let key = new_api_key();
        assert_eq!(key.len(), API_KEY_PREFIX.len() + 32);
        assert!(
            key[API_KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
        assert_ne!(new_api_key(), key);
        assert_eq!(api_key_hash(&key).len(), 32);
        let account_key = new_account_api_key();
        assert_eq!(account_key.len(), ACCOUNT_API_KEY_PREFIX.len() + 32);
        assert!(!key.starts_with(ACCOUNT_API_KEY_PREFIX));
    }
}
