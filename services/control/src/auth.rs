//! Credentials: password hashing, account session tokens, tenant API keys,
//! and the [`Principal`] a request acts as.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use aws_lc_rs::{digest, hmac};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::scopes::{Scope, Scopes};

/// Who a request acts as, from its `Authorization: Bearer` header.
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

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer header",
            ))?;
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
            Ok(Principal::Account {
                id: key.account_id,
                key: Some(key.id),
            })
        } else if token.starts_with(API_KEY_PREFIX) {
            let key = state
                .store()
                .api_key_by_hash(&api_key_hash(token))
                .await?
                .ok_or(ApiError::Unauthorized("unknown or revoked API key"))?;
            Ok(Principal::ApiKey {
                tenant_id: key.tenant_id,
                key_id: key.id,
                scopes: key.scopes,
            })
        } else {
            let account = state
                .sessions()
                .verify(token, OffsetDateTime::now_utc())
                .ok_or(ApiError::Unauthorized("invalid or expired session token"))?;
            Ok(Principal::Account {
                id: account,
                key: None,
            })
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

// ---- account session tokens ----

/// Name of the session signing secret in the store's `server_secrets`.
pub const SESSION_SECRET: &str = "session-hmac-sha256";
const SESSION_VERSION: &str = "s1";

#[derive(Serialize, Deserialize)]
struct SessionClaims {
    sub: Uuid,
    iat: i64,
    exp: i64,
}

/// Signs and verifies account session tokens:
/// `s1.<base64url(JSON claims)>.<base64url(HMAC-SHA256 of what precedes)>`.
pub struct SessionKeys {
    key: hmac::Key,
    ttl: time::Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(secret: &[u8], ttl: time::Duration) -> Self {
        SessionKeys {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
        }
    }

    /// A token for `account`, valid from `now` for the configured lifetime.
    pub fn issue(&self, account: Uuid, now: OffsetDateTime) -> String {
        let claims = SessionClaims {
            sub: account,
            iat: now.unix_timestamp(),
            exp: (now + self.ttl).unix_timestamp(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!("{SESSION_VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The account of a token whose signature holds and which has not expired at `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Option<Uuid> {
        let (signed, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, signed.as_bytes(), &tag).ok()?;
        let payload = signed.strip_prefix(SESSION_VERSION)?.strip_prefix('.')?;
        let claims: SessionClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now.unix_timestamp() < claims.exp).then_some(claims.sub)
    }
}

/// A fresh random secret for [`SessionKeys`].
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

    fn keys() -> SessionKeys {
        SessionKeys::new(
            b"0123456789abcdef0123456789abcdef",
            time::Duration::hours(1),
        )
    }

    #[test]
    fn session_token_round_trips_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let account = Uuid::new_v4();
        let token = keys().issue(account, now);
        assert_eq!(keys().verify(&token, now), Some(account));
        assert_eq!(
            keys().verify(&token, now + time::Duration::minutes(59)),
            Some(account)
        );
        assert_eq!(keys().verify(&token, now + time::Duration::hours(1)), None);
    }

    #[test]
    fn session_token_with_changed_claims_or_other_key_is_refused() {
        let now = OffsetDateTime::now_utc();
        let token = keys().issue(Uuid::new_v4(), now);
        let other = SessionKeys::new(b"another secret", time::Duration::hours(1));
        assert_eq!(other.verify(&token, now), None);
        let (_, tag) = token.rsplit_once('.').unwrap();
        let forged_claims = format!(r#"{{"sub":"{}","iat":0,"exp":9999999999}}"#, Uuid::new_v4());
        let forged = format!("s1.{}.{tag}", URL_SAFE_NO_PAD.encode(forged_claims));
        assert_eq!(keys().verify(&forged, now), None);
        assert_eq!(keys().verify("s1.e30", now), None);
        assert_eq!(keys().verify("", now), None);
    }

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
