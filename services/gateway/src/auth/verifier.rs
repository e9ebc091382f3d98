//! Checks a token against one directory snapshot: no I/O on the connect path.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::directory::{Directory, DirectoryCache, TenantStatus};
use super::{Acl, AuthFailure, Grant};

/// The only `alg`s accepted. Everything else (`none`, HS*, RS*, ES*) is
/// refused before a key is looked up, so a public key can never be used as
/// an HMAC secret.
pub const ALLOWED_ALGORITHMS: &[(&str, Algorithm)] = &[("EdDSA", Algorithm::EdDSA)];
/// Clock skew tolerated for `nbf` and `iat` in the future.
pub const LEEWAY_SECONDS: i64 = 30;
/// The `aud` of every MQTT token.
pub const AUDIENCE: &str = "mqtt";

/// Verifies CONNECT passwords as tokens of one issuer.
pub struct Verifier {
    issuer: String,
    directory: Arc<DirectoryCache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    sub: String,
    tnt: String,
    exp: i64,
    jti: String,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    acl: Option<Acl>,
}

impl Verifier {
    /// Tokens must carry `iss == issuer` and a key of `directory`.
    pub fn new(issuer: impl Into<String>, directory: Arc<DirectoryCache>) -> Verifier {
        Verifier {
            issuer: issuer.into(),
            directory,
        }
    }

    /// The directory tokens are checked against.
    pub fn directory(&self) -> &Arc<DirectoryCache> {
        &self.directory
    }

    /// Verifies against the current snapshot only.
    pub fn verify(&self, password: &[u8], client_id: &str, now: i64) -> Result<Grant, AuthFailure> {
        verify_with(
            &self.directory.snapshot(),
            &self.issuer,
            password,
            client_id,
            now,
        )
    }

    /// [`Verifier::verify`], trying once more after a newer directory:
    /// - an unknown `kid` (a key rotated a moment ago) refreshes it now, at
    ///   most every few seconds (anyone can send an unknown `kid`);
    /// - a validly signed token of an unknown tenant (created a moment ago)
    ///   waits for the next periodic refresh, which costs nothing extra.
    pub async fn authenticate(
        &self,
        password: &[u8],
        client_id: &str,
        now: i64,
    ) -> Result<Grant, AuthFailure> {
        match self.verify(password, client_id, now) {
            Err(AuthFailure::UnknownKid) if self.directory.refresh_on_demand().await => {
                self.verify(password, client_id, now)
            }
            Err(AuthFailure::UnknownTenant) if self.directory.next_refresh().await => {
                self.verify(password, client_id, now)
            }
            result => result,
        }
    }
}

/// Verifies `token` (the CONNECT password) for a client connecting as
/// `client_id` at `now` (Unix seconds), against `directory` alone.
pub fn verify_with(
    directory: &Directory,
    issuer: &str,
    token: &[u8],
    client_id: &str,
    now: i64,
) -> Result<Grant, AuthFailure> {
    let token = std::str::from_utf8(token).map_err(|_| AuthFailure::Malformed)?;
    let encoded_header = token.split('.').next().ok_or(AuthFailure::Malformed)?;
    let header: Header = URL_SAFE_NO_PAD
        .decode(encoded_header)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AuthFailure::Malformed)?;
    let (_, algorithm) = ALLOWED_ALGORITHMS
        .iter()
        .find(|(name, _)| *name == header.alg)
        .ok_or(AuthFailure::AlgNotAllowed)?;
    let kid = header.kid.ok_or(AuthFailure::Malformed)?;
    let key = directory.keys.get(&kid).ok_or(AuthFailure::UnknownKid)?;
    if key.algorithm != *algorithm {
        return Err(AuthFailure::AlgNotAllowed);
    }

    // The library checks the signature; the claims are checked below, each
    // with its own reason.
    let mut validation = Validation::new(*algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthFailure::AlgNotAllowed,
            _ => AuthFailure::Malformed,
        })?
        .claims;

    if claims.iss != issuer {
        return Err(AuthFailure::WrongIssuer);
    }
    let audience_ok = match &claims.aud {
        Audience::One(aud) => aud == AUDIENCE,
        Audience::Many(auds) => auds.iter().any(|a| a == AUDIENCE),
    };
    if !audience_ok {
        return Err(AuthFailure::WrongAudience);
    }
    if claims.exp <= now {
        return Err(AuthFailure::Expired);
    }
    let starts = claims.nbf.into_iter().chain(claims.iat).max();
    if starts.is_some_and(|t| t > now.saturating_add(LEEWAY_SECONDS)) {
        return Err(AuthFailure::NotYetValid);
    }
    match directory.tenants.get(&claims.tnt) {
        Some(TenantStatus::Active) => {}
        Some(TenantStatus::Suspended) => return Err(AuthFailure::TenantInactive),
        None => return Err(AuthFailure::UnknownTenant),
    }
    if directory.revoked_jtis.contains(&claims.jti) {
        return Err(AuthFailure::Revoked);
    }
    if let Some(bound) = &claims.client_id
        && !client_id.is_empty()
        && bound != client_id
    {
        return Err(AuthFailure::ClientIdMismatch);
    }
    Ok(Grant {
        tenant_id: claims.tnt,
        sub: claims.sub,
        jti: claims.jti,
        exp: claims.exp,
        client_id: claims.client_id,
        acl: claims.acl,
    })
}
