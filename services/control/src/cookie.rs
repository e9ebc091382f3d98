//! The console's session cookie: it carries the session token so that a
//! reload keeps the person signed in, where no script can read it.
//!
//! HttpOnly (no script reads it), SameSite=Strict (no other site's page
//! makes the browser send it), Path=/, Max-Age of the session. Secure, under
//! the `__Host-` prefix (which also forbids a Domain attribute), when the
//! control plane's own URL (`--issuer`) is https: the control plane speaks
//! plain HTTP itself, so that URL is how it knows a TLS proxy fronts it
//! (never a request header, which any client can write).

use axum::http::{HeaderMap, HeaderValue, header};

const PLAIN_NAME: &str = "aerie_session";
const SECURE_NAME: &str = "__Host-aerie_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCookie {
    secure: bool,
}

impl SessionCookie {
    /// Secure when the control plane's public URL `issuer` is https.
    pub fn for_issuer(issuer: &str) -> Self {
        SessionCookie {
            secure: issuer
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://")),
        }
    }

    pub fn name(&self) -> &'static str {
        if self.secure { SECURE_NAME } else { PLAIN_NAME }
    }

    /// `Set-Cookie` for a session token that lives `max_age_secs` more.
    pub fn set(&self, token: &str, max_age_secs: i64) -> HeaderValue {
        self.header(token, max_age_secs.max(0))
    }

    /// `Set-Cookie` that makes the browser drop the cookie (log out).
    pub fn clear(&self) -> HeaderValue {
        self.header("", 0)
    }

    fn header(&self, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}",
            self.name()
        ))
        // A session token is base64url and dots: always a valid header value.
        .expect("a session token is a valid cookie value")
    }

    /// The session token the request's `Cookie` headers carry, if any.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name())
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_gets_an_http_only_strict_cookie_without_secure() {
        let cookie = SessionCookie::for_issuer("http://127.0.0.1:8080");
        assert_eq!(
            cookie.set("s2.abc.def", 3600),
            "aerie_session=s2.abc.def; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            cookie.clear(),
            "aerie_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn an_https_control_plane_gets_a_secure_host_prefixed_cookie() {
        let cookie = SessionCookie::for_issuer("HTTPS://aerie.example.com");
        assert_eq!(
            cookie.set("t", 60),
            "__Host-aerie_session=t; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn the_token_is_read_among_other_cookies_and_only_under_its_name() {
        let cookie = SessionCookie::for_issuer("http://x");
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x_aerie_session=no; aerie_session=s2.a.b ; other=1"),
        );
        assert_eq!(cookie.read(&headers), Some("s2.a.b"));
        let secure = SessionCookie::for_issuer("https://x");
        assert_eq!(secure.read(&headers), None);
        let empty: HeaderMap = [(header::COOKIE, HeaderValue::from_static("aerie_session="))]
            .into_iter()
            .collect();
        assert_eq!(cookie.read(&empty), None);
    }
}
