//! Cross-site request forgery, for requests the session cookie authenticates
//! (a browser attaches a cookie by itself; a bearer token it never does, so
//! those need none of this).
//!
//! A state-changing request (any method but GET, HEAD, OPTIONS) must come
//! from the control plane's own origin and carry `X-Aerie-CSRF`: the CSRF
//! token of its session. We chose a synchronizer token over a double-submit
//! cookie: the token is derived from the session (an HMAC of its id, see
//! `session::SessionKeys::csrf_token`), handed out in the sign-in answer and
//! by `GET /v1/account` (which another site cannot read), and kept by the
//! console in memory. A double-submit cookie can be planted by a sibling
//! subdomain or a plain-HTTP man in the middle; a token bound to the session
//! cannot, and it needs no second cookie. Another site's form cannot set a
//! header at all, so its POST is refused here even if SameSite were ignored.

use axum::http::{HeaderMap, Method, header};
use uuid::Uuid;

use crate::error::ApiError;
use crate::session::SessionKeys;

/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-aerie-csrf";

/// Prometheus counter of cookie-authenticated requests refused, by `reason`
/// (`cross_origin`, `missing_token`, `wrong_token`).
pub const CSRF_REFUSED_TOTAL: &str = "aerie_control_csrf_refused_total";

/// Whether `method` may change something (what needs the CSRF checks).
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a request a browser says came from another origin: an `Origin`
/// that is not this host, or `Sec-Fetch-Site` other than `same-origin` or
/// `none` (typed by the person).
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or(""));
    let foreign_fetch = fetch_site.is_some_and(|s| s != "same-origin" && s != "none");
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = origin.is_some_and(|o| !same_host(o, host));
    if foreign_fetch || foreign_origin {
        return Err(refuse(
            "cross_origin",
            "a request from another site may not use the session cookie",
        ));
    }
    Ok(())
}

/// `origin` (`scheme://host[:port]`, or `null`) names `host` (the request's
/// `Host`, `host[:port]`).
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Refuses a request without session `sid`'s CSRF token in [`CSRF_HEADER`].
pub fn check_token(headers: &HeaderMap, keys: &SessionKeys, sid: Uuid) -> Result<(), ApiError> {
    let Some(given) = headers.get(CSRF_HEADER) else {
        return Err(refuse(
            "missing_token",
            "a request authenticated by the session cookie must carry the X-Aerie-CSRF header \
             (the csrf_token of the log-in answer or of GET /v1/account)",
        ));
    };
    if !given.to_str().is_ok_and(|g| keys.csrf_matches(sid, g)) {
        return Err(refuse(
            "wrong_token",
            "the X-Aerie-CSRF header is not this session's csrf_token",
        ));
    }
    Ok(())
}

fn refuse(reason: &'static str, detail: &'static str) -> ApiError {
    metrics::counter!(CSRF_REFUSED_TOTAL, "reason" => reason).increment(1);
    tracing::warn!(reason, "cookie-authenticated request refused (CSRF)");
    ApiError::Forbidden(detail.into())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    axum::http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn only_safe_methods_skip_the_checks() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_state_changing(&m), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_state_changing(&m), "{m}");
        }
    }

    #[test]
    fn same_origin_or_no_origin_passes_and_another_is_refused() {
        let host = ("host", "127.0.0.1:8080");
        assert!(check_origin(&headers(&[host])).is_ok());
        assert!(check_origin(&headers(&[host, ("origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(check_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        for foreign in [
            headers(&[host, ("origin", "https://evil.example")]),
            headers(&[host, ("origin", "http://127.0.0.1:8081")]),
            headers(&[host, ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
        ] {
            assert!(
                matches!(check_origin(&foreign), Err(ApiError::Forbidden(_))),
                "{foreign:?}"
            );
        }
    }
}
