//! Checks a token against one directory snapshot: no I/O on the connect path.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use std::str::FromStr;

use super::directory::{Directory, DirectoryCache, TENANT_ISSUER_ALGORITHMS, TenantStatus};
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
    /// Whether the header has `crit`, whatever its value: we understand no
    /// extension, so such a token is invalid (RFC 7515 §4.1.11); the
    /// library parses `crit` but does not enforce it.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The claims that choose the verifying keys, read before verification.
#[derive(Deserialize)]
struct Unverified {
    iss: String,
    tnt: String,
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
            Err(AuthFailure::UnknownKid) if self.refresh_for_unknown_kid(password).await => {
                self.verify(password, client_id, now)
            }
            Err(AuthFailure::UnknownTenant | AuthFailure::UnknownIssuer)
                if self.directory.next_refresh().await =>
            {
                self.verify(password, client_id, now)
            }
            result => result,
        }
    }
}

impl Verifier {
    /// A tenant issuer's token refreshes that issuer only (one tenant's
    /// rotation never refetches everyone's keys); the control plane's
    /// refreshes the directory.
    async fn refresh_for_unknown_kid(&self, password: &[u8]) -> bool {
        let claimed = std::str::from_utf8(password)
            .ok()
            .and_then(|t| decode_part::<Unverified>(t.split('.').nth(1)).ok());
        match claimed {
            Some(c) if c.iss != self.issuer => {
                self.directory
                    .refresh_issuer_on_demand(&c.tnt, &c.iss)
                    .await
            }
            _ => self.directory.refresh_on_demand().await,
        }
    }
}

/// A base64url JSON part of a JWT.
fn decode_part<T: serde::de::DeserializeOwned>(part: Option<&str>) -> Result<T, AuthFailure> {
    part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AuthFailure::Malformed)
}

/// The key of the issuer the token's tenant registered under the token's
/// `iss` — never another tenant's, whatever the token says about keys.
fn tenant_issuer_key<'d>(
    directory: &'d Directory,
    header: &Header,
    unverified: &Unverified,
) -> Result<(&'d jsonwebtoken::DecodingKey, Algorithm, &'d str), AuthFailure> {
    let algorithm = TENANT_ISSUER_ALGORITHMS
        .into_iter()
        .find(|a| Algorithm::from_str(&header.alg).ok() == Some(*a))
        .ok_or(AuthFailure::AlgNotAllowed)?;
    let issuer = directory
        .issuers
        .get(&unverified.tnt)
        .and_then(|list| list.iter().find(|i| i.issuer == unverified.iss))
        .ok_or(AuthFailure::UnknownIssuer)?;
    let key = match &header.kid {
        Some(kid) => issuer
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid.as_str()))
            .ok_or(AuthFailure::UnknownKid)?,
        // Without a `kid` only an issuer with a single key is unambiguous.
        None if issuer.keys.len() == 1 => &issuer.keys[0],
        None => return Err(AuthFailure::UnknownKid),
    };
    if !key.algorithms.contains(&algorithm) {
        return Err(AuthFailure::AlgNotAllowed);
    }
    Ok((&key.key, algorithm, &issuer.issuer))
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
    let mut parts = token.split('.');
    let header: Header = decode_part(parts.next())?;
    if header.crit {
        return Err(AuthFailure::Malformed);
    }
    // Which keys may verify it depends on who says they issued it: read
    // (not trusted) before the signature is checked.
    let unverified: Unverified = decode_part(parts.next())?;
    let tenant_issuer = unverified.iss != issuer;
    let (key, algorithm, issuer) = if !tenant_issuer {
        let (_, algorithm) = ALLOWED_ALGORITHMS
            .iter()
            .find(|(name, _)| *name == header.alg)
            .ok_or(AuthFailure::AlgNotAllowed)?;
        let kid = header.kid.ok_or(AuthFailure::Malformed)?;
        let key = directory.keys.get(&kid).ok_or(AuthFailure::UnknownKid)?;
        if key.algorithm != *algorithm {
            return Err(AuthFailure::AlgNotAllowed);
        }
        (&key.key, *algorithm, issuer)
    } else {
        tenant_issuer_key(directory, &header, &unverified)?
    };

    // The library checks the signature; the claims are checked below, each
    // with its own reason.
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthFailure::AlgNotAllowed,
            _ => AuthFailure::Malformed,
        })?
        .claims;

    if claims.iss != issuer {
        return Err(AuthFailure::UnknownIssuer);
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
    let limits = match directory.tenants.get(&claims.tnt) {
        Some(facts) if facts.status == TenantStatus::Active => facts.limits,
        Some(_) => return Err(AuthFailure::TenantInactive),
        None => return Err(AuthFailure::UnknownTenant),
    };
    if directory.is_revoked(&claims.tnt, &claims.jti) {
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
        tenant_issuer: tenant_issuer.then_some(claims.iss),
        limits,
    })
}
