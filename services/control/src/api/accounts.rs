//! People: sign-up (`POST /v1/accounts`) and log-in (`POST /v1/sessions`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, Problem};
use crate::ratelimit::{ClientIp, Route};
use crate::store::{self, StoreError};
use crate::{auth, session};

/// An email and a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(example = "ada@example.com")]
    email: String,
    /// At least 10 characters (sign-up), at most 1024 bytes.
    #[schema(example = "correct horse battery staple")]
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

/// A new account and a session for it.
#[derive(Serialize, ToSchema)]
struct SignedUp {
    account_id: Uuid,
    #[serde(flatten)]
    session: Session,
}

/// Sign up: create an account.
///
/// Answers with the account id and a session token, as a log-in would.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 201, description = "Account created, and signed in (the session cookie is set too)",
         body = SignedUp, headers(("Set-Cookie" = String, description = "The console's session cookie (`aerie_session`; `__Host-aerie_session` with `Secure` when the control plane's URL is https): the session token, HttpOnly, SameSite=Strict, Path=/, Max-Age of the session. Scripts may ignore it."))),
        (status = 400, description = "Not a valid email address, or the password is too short or too long",
         body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An account with this email exists", body = Problem,
         content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds until the next attempt may pass"))),
    ),
)]
pub async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    state.auth_limits().check(Route::SignUp, ip, &body.email)?;
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
    let (cookie, session) = start_session(&state, account.id).await?;
    Ok((
        StatusCode::CREATED,
        cookie,
        Json(SignedUp {
            account_id: account.id,
            session,
        }),
    ))
}

/// A session: its token for scripts, and for the console (which uses the
/// cookie instead of the token) the CSRF token of its state-changing requests.
#[derive(Serialize, ToSchema)]
pub(super) struct Session {
    /// Account session token (bearer), valid until `expires_at` or log-out.
    token: String,
    /// The `X-Aerie-CSRF` value of this session: requests authenticated by the
    /// session cookie need it on every POST, PUT, PATCH and DELETE.
    csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

/// Starts a session for `account`: its `Set-Cookie` header and the answer's body.
async fn start_session(
    state: &AppState,
    account: Uuid,
) -> Result<([(header::HeaderName, HeaderValue); 1], Session), ApiError> {
    let now = OffsetDateTime::now_utc();
    let started = session::start(state, account, now).await?;
    let max_age = started.expires_at.unix_timestamp() - now.unix_timestamp();
    let cookie = state.session_cookie().set(&started.token, max_age);
    Ok((
        [(header::SET_COOKIE, cookie)],
        Session {
            token: started.token,
            csrf_token: started.csrf_token,
            expires_at: started.expires_at,
        },
    ))
}

/// Log in: trade an email and password for a session.
///
/// Answers with the session token (for scripts: `Authorization: Bearer`) and
/// sets the same token in the console's session cookie, with the CSRF token
/// that requests authenticated by the cookie must carry.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in (the session cookie is set too)", body = Session,
         headers(("Set-Cookie" = String, description = "The console's session cookie (`aerie_session`; `__Host-aerie_session` with `Secure` when the control plane's URL is https): the session token, HttpOnly, SameSite=Strict, Path=/, Max-Age of the session. Scripts may ignore it."))),
        (status = 401, description = "Wrong email or password (the same answer for an unknown email)",
         body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address, or this address failed \
         for this email and the email is backed off after failed log-ins",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds until the next attempt may pass"))),
    ),
)]
pub async fn log_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    // Before any lookup, so a limited answer takes the same time for any email.
    state.auth_limits().check(Route::LogIn, ip, &body.email)?;
    const WRONG: ApiError = ApiError::Unauthorized("wrong email or password");
    let account = match normalise_email(&body.email) {
        Some(email) => state.store().account_by_email(&email).await?,
        None => None,
    };
    let password = body.password;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let right =
        password.len() <= MAX_PASSWORD_BYTES && auth::verify_password(password, hash).await?;
    let Some(account) = account.filter(|_| right) else {
        // Only failures count for the email: successes never back it off.
        state.auth_limits().failed_log_in(ip, &body.email);
        return Err(WRONG);
    };
    state.auth_limits().logged_in(ip, &body.email);
    let (cookie, session) = start_session(&state, account.id).await?;
    Ok((cookie, Json(session)))
}
