//! Tenant JWT issuers: a tenant registers the issuer (`iss`) of the tokens it
//! mints itself and where its public keys are: a JWKS URL, a JWKS, or one PEM
//! public key. Registration only; the gateways verify with them later.
//!
//! Only asymmetric public keys are accepted (RSA 2048 to 8192 bits, EC P-256
//! or P-384, Ed25519), with an `alg`, if any, from [`ALLOWED_ALGS`] that fits
//! the key. Symmetric (`oct`) keys are refused: a verifier that holds an HMAC
//! secret can be fooled by algorithm confusion, and the secret must not travel.

use std::collections::HashSet;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::TenantWith;
use crate::AppState;
use crate::error::{ApiError, ApiJson, Problem};
use crate::scopes::need;
use crate::store::{self, StoreError};

pub const MAX_ISSUER_CHARS: usize = 255;
pub const MAX_JWKS_URL_BYTES: usize = 2048;
pub const MAX_JWKS_KEYS: usize = 20;
pub const MAX_PEM_BYTES: usize = 16 * 1024;
pub const MAX_ISSUERS_PER_TENANT: usize = 10;
/// The JWS algorithms a registered key may name (no HMAC, no `none`).
pub const ALLOWED_ALGS: [KeyAlgorithm; 9] = {
    use KeyAlgorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};
const ALLOWED_ALG_NAMES: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
/// JWK members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A tenant's own token issuer: its `iss` and exactly one key source.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerBody {
    /// The `iss` claim of the tenant's tokens (1 to 255 characters).
    #[schema(example = "https://auth.example.com/")]
    issuer: String,
    /// Where the issuer publishes its JWKS: https (http only to a loopback host).
    #[serde(default)]
    jwks_url: Option<String>,
    /// A JWK set of public RSA, EC (P-256/P-384) or Ed25519 keys.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    jwks: Option<Value>,
    /// One SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    public_key_pem: Option<String>,
}

/// A registered issuer.
#[derive(Serialize, ToSchema)]
#[schema(as = Issuer)]
struct IssuerView {
    id: Uuid,
    issuer: String,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_url: Option<String>,
    /// The `kid`s of a registered JWKS (empty for the other kinds).
    key_ids: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<store::Issuer> for IssuerView {
    fn from(i: store::Issuer) -> Self {
        let key_ids = i
            .jwks
            .as_deref()
            .and_then(|json| serde_json::from_str::<JwkSet>(json).ok())
            .map(|set| {
                set.keys
                    .into_iter()
                    .filter_map(|k| k.common.key_id)
                    .collect()
            })
            .unwrap_or_default();
        IssuerView {
            id: i.id,
            issuer: i.issuer,
            kind: i.kind,
            jwks_url: i.jwks_url,
            key_ids,
            created_at: i.created_at,
        }
    }
}

fn unprocessable(detail: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(detail.into())
}

/// 1 to 255 characters, no control characters, no surrounding whitespace
/// (it is compared verbatim with the tokens' `iss`).
fn valid_issuer(issuer: &str, own: &str) -> Result<(), ApiError> {
    if issuer.is_empty() || issuer.chars().count() > MAX_ISSUER_CHARS {
        return Err(ApiError::Invalid(format!(
            "issuer must have 1 to {MAX_ISSUER_CHARS} characters"
        )));
    }
    if issuer.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "issuer must not contain control characters".into(),
        ));
    }
    if issuer.trim() != issuer {
        return Err(ApiError::Invalid(
            "issuer must not start or end with whitespace".into(),
        ));
    }
    if issuer == own {
        return Err(unprocessable(
            "issuer is the control plane's own; register the issuer of your own tokens",
        ));
    }
    Ok(())
}

/// `https://…`, or `http://` to a loopback host only; no credentials.
fn valid_jwks_url(url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_JWKS_URL_BYTES {
        return Err(unprocessable(format!(
            "jwks_url must have at most {MAX_JWKS_URL_BYTES} bytes"
        )));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| unprocessable("jwks_url is not a valid absolute URL"))?;
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| unprocessable("jwks_url is not a valid absolute URL"))?;
    if authority.as_str().contains('@') {
        return Err(unprocessable("jwks_url must not carry credentials"));
    }
    let loopback = matches!(
        authority.host().to_ascii_lowercase().as_str(),
        "127.0.0.1" | "[::1]" | "::1" | "localhost"
    );
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(unprocessable(
            "jwks_url must use https (plain http only to a loopback host: 127.0.0.1, ::1 or localhost)",
        )),
    }
}

fn b64url(value: &str, what: &str, i: usize) -> Result<Vec<u8>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| unprocessable(format!("jwks key {i}: {what} is not base64url")))
}

/// A JWK set of 1 to 20 asymmetric public keys; returns it re-serialised
/// (public members only) and its `kid`s.
fn valid_jwks(jwks: &Value) -> Result<(String, Vec<String>), ApiError> {
    let not_a_set =
        || ApiError::Invalid("jwks must be a JSON Web Key Set: {\"keys\": [...]}".into());
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(not_a_set)?;
    if keys.is_empty() {
        return Err(unprocessable("jwks must contain at least one key"));
    }
    if keys.len() > MAX_JWKS_KEYS {
        return Err(unprocessable(format!(
            "jwks must contain at most {MAX_JWKS_KEYS} keys"
        )));
    }
    let mut parsed = Vec::with_capacity(keys.len());
    let mut kids = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in keys.iter().enumerate() {
        let jwk = valid_jwk(i, raw)?;
        if let Some(kid) = &jwk.common.key_id {
            if !seen.insert(kid.clone()) {
                return Err(unprocessable(format!("jwks has the kid {kid:?} twice")));
            }
            kids.push(kid.clone());
        }
        parsed.push(jwk);
    }
    let json = serde_json::to_string(&JwkSet { keys: parsed }).map_err(anyhow::Error::from)?;
    Ok((json, kids))
}

fn valid_jwk(i: usize, raw: &Value) -> Result<Jwk, ApiError> {
    let members = raw
        .as_object()
        .ok_or_else(|| unprocessable(format!("jwks key {i} is not a JSON object")))?;
    let kty = members.get("kty").and_then(Value::as_str).unwrap_or("");
    if kty == "oct" {
        return Err(unprocessable(format!(
            "jwks key {i} is a symmetric (oct) key: only RSA, EC and OKP public keys are accepted; \
             never share an HMAC secret"
        )));
    }
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
        return Err(unprocessable(format!(
            "jwks key {i} has the private member {m:?}: send only public keys"
        )));
    }
    let jwk: Jwk = serde_json::from_value(raw.clone())
        .map_err(|e| unprocessable(format!("jwks key {i} is not a valid JWK: {e}")))?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => {
            return Err(unprocessable(format!("jwks key {i}: use must be \"sig\"")));
        }
    }
    // Which algorithms fit the key, and the key itself checked by aws-lc-rs.
    let fits: &[KeyAlgorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = b64url(&rsa.n, "n", i)?;
            let e = b64url(&rsa.e, "e", i)?;
            let bits = bit_length(&n);
            if !(2048..=8192).contains(&bits) {
                return Err(unprocessable(format!(
                    "jwks key {i}: the RSA modulus has {bits} bits; 2048 to 8192 are accepted"
                )));
            }
            if bit_length(&e) < 2 || e.last().is_none_or(|b| b & 1 == 0) || e.len() > 8 {
                return Err(unprocessable(format!(
                    "jwks key {i}: the RSA exponent is not a valid public exponent"
                )));
            }
            use KeyAlgorithm::*;
            &[RS256, RS384, RS512, PS256, PS384, PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (alg, len, verify): (_, _, &'static _) = match ec.curve {
                EllipticCurve::P256 => (KeyAlgorithm::ES256, 32, &ECDSA_P256_SHA256_ASN1),
                EllipticCurve::P384 => (KeyAlgorithm::ES384, 48, &ECDSA_P384_SHA384_ASN1),
                _ => {
                    return Err(unprocessable(format!(
                        "jwks key {i}: EC keys must be on P-256 or P-384"
                    )));
                }
            };
            let (x, y) = (b64url(&ec.x, "x", i)?, b64url(&ec.y, "y", i)?);
            if x.len() != len || y.len() != len {
                return Err(unprocessable(format!(
                    "jwks key {i}: x and y must have {len} bytes each"
                )));
            }
            let point = [&[4u8][..], &x, &y].concat();
            ParsedPublicKey::new(verify, point).map_err(|_| {
                unprocessable(format!("jwks key {i}: the EC point is not on the curve"))
            })?;
            match alg {
                KeyAlgorithm::ES256 => &[KeyAlgorithm::ES256],
                _ => &[KeyAlgorithm::ES384],
            }
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err(unprocessable(format!(
                    "jwks key {i}: OKP keys must be Ed25519"
                )));
            }
            let x = b64url(&okp.x, "x", i)?;
            if x.len() != 32 || ParsedPublicKey::new(&ED25519, &x).is_err() {
                return Err(unprocessable(format!(
                    "jwks key {i}: x is not an Ed25519 public key"
                )));
            }
            &[KeyAlgorithm::EdDSA]
        }
        _ => {
            return Err(unprocessable(format!(
                "jwks key {i} (kty {kty:?}) is not a complete public key of an accepted type: \
                 RSA (n, e), EC (crv, x, y) or OKP (crv, x)"
            )));
        }
    };
    if let Some(alg) = jwk.common.key_algorithm {
        if !ALLOWED_ALGS.contains(&alg) {
            let named = members.get("alg").map(Value::to_string).unwrap_or_default();
            return Err(unprocessable(format!(
                "jwks key {i}: alg {named} is not accepted; use one of {ALLOWED_ALG_NAMES}"
            )));
        }
        if !fits.contains(&alg) {
            return Err(unprocessable(format!(
                "jwks key {i}: alg {alg:?} does not fit a {kty} key"
            )));
        }
    }
    Ok(jwk)
}

/// Bits of a big-endian unsigned integer, leading zero bytes ignored.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(first) => (be.len() - first) * 8 - be[first].leading_zeros() as usize,
        None => 0,
    }
}

/// One `PUBLIC KEY` PEM (SubjectPublicKeyInfo) of an RSA (2048 to 8192 bits),
/// EC P-256/P-384 or Ed25519 key; returns it trimmed.
fn valid_public_key_pem(pem: &str) -> Result<String, ApiError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(unprocessable(format!(
            "public_key_pem must have at most {MAX_PEM_BYTES} bytes"
        )));
    }
    if pem.contains("PRIVATE KEY") {
        return Err(unprocessable(
            "public_key_pem holds a private key: send only public keys",
        ));
    }
    let pem = pem.trim();
    let label = pem
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label)
        .ok_or_else(|| unprocessable("public_key_pem is not a PEM document"))?;
    if label != "PUBLIC KEY" {
        return Err(unprocessable(format!(
            "public_key_pem must be a \"PUBLIC KEY\" PEM (SubjectPublicKeyInfo), not {label:?}"
        )));
    }
    let body = pem
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or_else(|| unprocessable("public_key_pem must hold exactly one PUBLIC KEY block"))?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(base64)
        .map_err(|_| unprocessable("public_key_pem is not valid base64 between its lines"))?;
    let ed25519 = der.len() != 32 && ParsedPublicKey::new(&ED25519, &der).is_ok();
    let ec = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &der).is_ok()
        || ParsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &der).is_ok();
    let rsa = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).is_ok();
    if rsa && aws_lc_rs::rsa::PublicEncryptingKey::from_der(&der).is_err() {
        return Err(unprocessable(
            "public_key_pem: the RSA key must have 2048 to 8192 bits",
        ));
    }
    if !(ed25519 || ec || rsa) {
        return Err(unprocessable(
            "public_key_pem is not an RSA, EC P-256/P-384 or Ed25519 public key",
        ));
    }
    Ok(format!("{pem}\n"))
}

/// Register an issuer: tokens with this `iss` are verified with its keys.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/issuers",
    tag = "issuers",
    params(("tid" = String, Path, description = "Tenant id")),
    request_body = IssuerBody,
    responses(
        (status = 201, description = "Registered", body = IssuerView),
        (status = 400, description = "Not exactly one key source, or a bad issuer name",
         body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has this issuer already", body = Problem,
         content_type = "application/problem+json"),
        (status = 422, description = "A key or URL that is refused (symmetric or private keys, \
         weak RSA, other curves, plain http to a non-loopback host), or too many issuers",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn register_issuer(
    State(state): State<AppState>,
    TenantWith { who, tenant, .. }: TenantWith<need::Issuers>,
    ApiJson(body): ApiJson<IssuerBody>,
) -> Result<impl IntoResponse, ApiError> {
    valid_issuer(&body.issuer, state.issuer())?;
    let jwks = body.jwks.filter(|v| !v.is_null());
    let given = [
        body.jwks_url.is_some(),
        jwks.is_some(),
        body.public_key_pem.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::Invalid(
            "give exactly one of jwks_url, jwks and public_key_pem".into(),
        ));
    }
    let mut issuer = store::Issuer {
        id: Uuid::new_v4(),
        tenant_id: tenant.id.clone(),
        issuer: body.issuer,
        kind: String::new(),
        jwks_url: None,
        jwks: None,
        public_key_pem: None,
        created_at: store::now(),
        created_by: who.api_key(),
    };
    if let Some(url) = body.jwks_url {
        valid_jwks_url(&url)?;
        issuer.kind = "jwks_url".into();
        issuer.jwks_url = Some(url);
    } else if let Some(jwks) = jwks {
        issuer.kind = "jwks".into();
        issuer.jwks = Some(valid_jwks(&jwks)?.0);
    } else if let Some(pem) = body.public_key_pem {
        issuer.kind = "public_key".into();
        issuer.public_key_pem = Some(valid_public_key_pem(&pem)?);
    }
    let store = state.store();
    if store.issuers_of(&tenant.id).await?.len() >= MAX_ISSUERS_PER_TENANT {
        return Err(unprocessable(format!(
            "a tenant may register at most {MAX_ISSUERS_PER_TENANT} issuers; delete one first"
        )));
    }
    match store.insert_issuer(&issuer).await {
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(
                "this tenant has registered this issuer already; delete it first to replace it",
            ));
        }
        other => other?,
    }
    tracing::info!(
        tenant_id = %tenant.id,
        issuer_id = %issuer.id,
        kind = %issuer.kind,
        "issuer registered"
    );
    Ok((StatusCode::CREATED, Json(IssuerView::from(issuer))))
}

/// The tenant's issuers, oldest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/issuers",
    tag = "issuers",
    params(("tid" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The issuers", body = Vec<IssuerView>)),
    security(("bearer" = [])),
)]
pub async fn list_issuers(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Issuers>,
) -> Result<impl IntoResponse, ApiError> {
    let issuers = state.store().issuers_of(&tenant.id).await?;
    Ok(Json(
        issuers
            .into_iter()
            .map(IssuerView::from)
            .collect::<Vec<_>>(),
    ))
}

/// Delete an issuer: its tokens stop verifying.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/issuers/{issuer_id}",
    tag = "issuers",
    params(
        ("tid" = String, Path, description = "Tenant id"),
        ("issuer_id" = String, Path, description = "Issuer id (a UUID)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such tenant or issuer", body = Problem,
         content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_issuer(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Issuers>,
    Path((_, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("issuer"))?;
    if !state.store().delete_issuer(&tenant.id, id).await? {
        return Err(ApiError::NotFound("issuer"));
    }
    tracing::info!(tenant_id = %tenant.id, issuer_id = %id, "issuer deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0x01, 0, 1]), 17);
    }

    #[test]
    fn jwks_url_rules() {
        for ok in [
            "https://auth.example.com/.well-known/jwks.json",
            "http://127.0.0.1:9000/jwks",
            "http://[::1]/jwks",
            "http://localhost:8080/jwks",
        ] {
            valid_jwks_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://auth.example.com/jwks",
            "ftp://auth.example.com/jwks",
            "https://user:pw@auth.example.com/jwks",
            "/jwks",
            "not a url",
        ] {
            assert!(valid_jwks_url(bad).is_err(), "{bad}");
        }
    }
}
