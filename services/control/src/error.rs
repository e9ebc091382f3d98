//! One error type for every route, rendered as `application/problem+json`
//! (RFC 9457), and the JSON extractor whose rejections use it.

use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use utoipa::ToSchema;

use crate::broker::BrokerError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but a value is out of bounds (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The body could not be read as the expected JSON (400, 413, 415, 422).
    #[error("{detail}")]
    Body { status: StatusCode, detail: String },
    /// Missing, malformed, expired or revoked credentials (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The credentials are fine but may not do this (403).
    #[error("{0}")]
    Forbidden(std::borrow::Cow<'static, str>),
    /// No such resource, or not one the caller may see (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// Something the route needs is not there or not answering (503).
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit (429), with a `Retry-After` of this many seconds.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Anything else (500): logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Body { status, .. } => *status,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type, a stable identifier clients may switch on.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Invalid(_) => "invalid-request",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Body { .. } => "invalid-body",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Body {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Refused(why) => ApiError::Unprocessable(why),
            BrokerError::Unavailable(why) => ApiError::Unavailable(why),
        }
    }
}

/// An error (RFC 9457 problem details), served as `application/problem+json`.
#[derive(Serialize, ToSchema)]
pub struct Problem<'a> {
    /// A stable identifier clients may switch on: `urn:aerie:problem:<kind>`.
    #[schema(example = "urn:aerie:problem:not-found")]
    r#type: String,
    /// The HTTP status's reason phrase.
    #[schema(example = "Not Found")]
    title: &'a str,
    /// The HTTP status code.
    #[schema(example = 404)]
    status: u16,
    /// What went wrong, for a person.
    #[schema(example = "tenant not found")]
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            r#type: format!("urn:aerie:problem:{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// `axum::Json`, but a body that cannot be read is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);
