//! The signed-in person: who they are (`GET /v1/account`, what the console
//! asks on load to stay signed in across a reload) and log-out
//! (`DELETE /v1/sessions/current`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Principal};
use crate::error::{ApiError, Problem};
use crate::session;

/// The account a request acts for.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    id: Uuid,
    email: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// The session the request carries (a person's session token or the
    /// console's cookie); absent for an account API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionView>,
}

/// A live session, as `GET /v1/account` shows it.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The `X-Aerie-CSRF` value of this session (see `POST /v1/sessions`).
    csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

/// The account of this request, and its session.
///
/// The console asks this on load with its session cookie: a 200 means it is
/// still signed in, and gives the CSRF token it lost with the reload.
#[utoipa::path(
    get,
    path = "/v1/account",
    tag = "accounts",
    responses(
        (status = 200, description = "The account (with the session, when one authenticates the request)",
         body = AccountView),
        (status = 403, description = "A tenant API key acts for its tenant, not an account",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AccountView>, ApiError> {
    let Principal::Account { id, .. } = caller.principal else {
        return Err(ApiError::Forbidden(
            "a tenant API key acts for its tenant, not for an account".into(),
        ));
    };
    // The account of a live session or key exists: accounts are never deleted
    // while their sessions and keys stay (ON DELETE CASCADE).
    let account = state
        .store()
        .account_by_id(id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    let session = caller.session.map(|live| SessionView {
        csrf_token: state.sessions().csrf_token(live.id),
        expires_at: OffsetDateTime::from_unix_timestamp(live.expires_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    });
    Ok(Json(AccountView {
        id: account.id,
        email: account.email,
        created_at: account.created_at,
        session,
    }))
}

/// Log out: end the session this request carries.
///
/// Its token and the console's cookie stop working at once, for every copy;
/// the answer clears the cookie. With the cookie, the request needs the
/// session's `X-Aerie-CSRF`, as every state-changing one does.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "accounts",
    responses(
        (status = 204, description = "Logged out; the session cookie is cleared",
         headers(("Set-Cookie" = String, description = "The session cookie, expired"))),
        (status = 403, description = "Not a session (an API key: delete it instead), or a \
         cookie-authenticated request without the session's CSRF token or from another site",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub async fn log_out(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let Some(live) = caller.session else {
        return Err(ApiError::Forbidden(
            "an API key is not a session: delete the key to stop it working".into(),
        ));
    };
    session::end(&state, live.id).await?;
    tracing::info!(account_id = %live.account, "logged out");
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, state.session_cookie().clear())],
    ))
}
