//! CONNECT authentication: the JWT in the password field.
//!
//! - `directory`: what verification needs to know (signing keys by `kid`,
//!   revoked `jti`s, tenant statuses) as an immutable snapshot, refreshed from
//!   a [`DirectorySource`] (in-process over the control plane's store in
//!   `aerie serve`; a NATS KV watch can implement the same trait later);
//! - `verifier`: checks a token against one snapshot, with no I/O.
//!
//! A refused client learns only the CONNACK code (0x86/0x87, or 4/5 in
//! 3.1.1); the reason goes to `aerie_auth_failures_total{reason}` and the log.

mod acl;
mod directory;
mod enforce;
mod verifier;

#[cfg(test)]
mod directory_cache_tests;
#[cfg(test)]
mod tests;

pub use acl::Permissions;
pub use directory::{
    DIRECTORY_STALE_LOADS_TOTAL, Directory, DirectoryCache, DirectorySource, IssuerKey,
    ON_DEMAND_REFRESH_INTERVAL, TENANT_ISSUER_ALGORITHMS, TenantFacts, TenantIssuer, TenantLimits,
    TenantStatus, VerifyingKey,
};
pub use enforce::{
    AUTH_DISCONNECTS_TOTAL, ISSUER_REMOVED, TENANT_DELETED, TENANT_SUSPENDED, TOKEN_EXPIRED,
    TOKEN_REVOKED, enforce, spawn_enforcer,
};
pub use verifier::{ALLOWED_ALGORITHMS, LEEWAY_SECONDS, Verifier};

use aerie_proto::ReasonCode;
use serde::Deserialize;

use crate::config::GatewayConfig;

/// Counted by reason on every refused authentication.
pub const AUTH_FAILURES_TOTAL: &str = "aerie_auth_failures_total";

/// The `acl` claim, carried for enforcement (not enforced here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Acl {
    #[serde(rename = "pub", default)]
    pub publish: Vec<String>,
    #[serde(rename = "sub", default)]
    pub subscribe: Vec<String>,
}

/// What a verified token grants its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant_id: String,
    pub sub: String,
    pub jti: String,
    /// Unix seconds.
    pub exp: i64,
    /// The only client id the token may connect with, if it names one.
    pub client_id: Option<String>,
    pub acl: Option<Acl>,
    /// The `iss` of the tenant's own issuer that signed it (`None`: the control plane).
    pub tenant_issuer: Option<String>,
    /// The tenant's limits as of the directory the token was verified with.
    pub limits: TenantLimits,
}

/// Why a CONNECT was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Not a JWT, a claim missing or of the wrong type, or a `crit` header
    /// (no extension is understood here).
    Malformed,
    BadSignature,
    /// No key with the token's `kid`, even after a refresh.
    UnknownKid,
    /// `alg` is not on the allow-list (`none`, HS*, RS*, ...).
    AlgNotAllowed,
    Expired,
    /// `nbf` or `iat` further in the future than the leeway.
    NotYetValid,
    WrongAudience,
    /// Neither the control plane nor an issuer the token's tenant
    /// registered is the token's `iss`.
    UnknownIssuer,
    Revoked,
    /// The tenant is suspended.
    TenantInactive,
    /// The tenant does not exist (deleted, or too new for the directory
    /// even after waiting for its next refresh).
    UnknownTenant,
    /// The token names a client id other than the CONNECT's.
    ClientIdMismatch,
    /// No password, and anonymous access is off.
    NoCredentials,
}

impl AuthFailure {
    /// The `reason` label of [`AUTH_FAILURES_TOTAL`].
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::AlgNotAllowed => "alg_not_allowed",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::UnknownIssuer => "unknown_issuer",
            AuthFailure::Revoked => "revoked",
            AuthFailure::TenantInactive => "tenant_inactive",
            AuthFailure::UnknownTenant => "unknown_tenant",
            AuthFailure::ClientIdMismatch => "client_id_mismatch",
            AuthFailure::NoCredentials => "no_credentials",
        }
    }

    /// The CONNACK reason: a bad token is "bad user name or password" (0x86,
    /// 3.1.1 code 4); a good token that may not connect, or none at all, is
    /// "not authorized" (0x87, 3.1.1 code 5).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            AuthFailure::Revoked
            | AuthFailure::TenantInactive
            | AuthFailure::UnknownTenant
            | AuthFailure::ClientIdMismatch
            | AuthFailure::NoCredentials => ReasonCode::NOT_AUTHORIZED,
            _ => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        }
    }
}

/// Who a CONNECT is, once authenticated.
#[derive(Debug)]
pub(crate) enum Admission {
    /// No token, and anonymous access is on: the anonymous tenant.
    Anonymous,
    Token(Box<Grant>),
}

/// PUBLISH, SUBSCRIBE and wills refused by a token's `acl`, by `action`
/// (`publish`, `subscribe`, `will`).
pub const ACL_DENIED_TOTAL: &str = "aerie_acl_denied_total";

/// The MQTT 5 authentication method whose data is a token; a client that
/// connects with it may re-authenticate with an AUTH packet (reason 0x19).
pub const JWT_AUTH_METHOD: &str = "JWT";

/// Authenticates a CONNECT: its `token` (the password, or the JWT method's
/// authentication data) is verified when a verifier is configured; without
/// one (or without a token) only `allow_anonymous` lets it in. Failures are
/// counted and logged here.
pub(crate) async fn admit(
    token: Option<&[u8]>,
    client_id: &str,
    config: &GatewayConfig,
) -> Result<Admission, AuthFailure> {
    let token = token.filter(|t| !t.is_empty());
    let result = match (token, &config.verifier) {
        (Some(token), Some(verifier)) => verifier
            .authenticate(token, client_id, unix_now())
            .await
            .map(|grant| Admission::Token(Box::new(grant))),
        _ if config.allow_anonymous => Ok(Admission::Anonymous),
        _ => Err(AuthFailure::NoCredentials),
    };
    if let Err(failure) = result {
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => failure.label()).increment(1);
        tracing::info!(reason = failure.label(), "CONNECT not authenticated");
    }
    result
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
