//! The web console: the built single-page app (`web/dist`, made by `make
//! web`) served at `/` on every path the API does not own.
//!
//! - A path whose last segment has a file extension is a file of the build,
//!   served by `ServeDir` (no `..` escapes, content type, ETag and
//!   Last-Modified with conditional GET); a missing one is a plain 404, never
//!   `index.html`, so a missing script cannot turn into HTML.
//! - Any other path is the app's own routing: `index.html`.
//! - `/assets/…` (content-hashed names) is cached for a year, immutable;
//!   everything else is `no-cache` (revalidated each time).
//! - Every answer carries a strict Content-Security-Policy whose
//!   `connect-src` allows the broker's WebSocket origins, and is gzipped
//!   when the client accepts it.
//! - Paths under `/v1/` and `/.well-known/` stay the API's 404 problem.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::compression::Compression;
use tower_http::services::ServeDir;

use crate::error::ApiError;
use crate::{AppState, Endpoints, api};

/// Cache lifetime of the content-hashed files under `/assets/`.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The headers every console answer carries besides its CSP.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// The console as configured: its directory and the headers computed once.
#[derive(Clone)]
pub struct Console {
    dir: PathBuf,
    files: Compression<ServeDir>,
    csp: HeaderValue,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("dir", &self.dir)
            .field("csp", &self.csp)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console served from `dir`, allowing the WebSocket origins of
    /// `endpoints`. Logs a warning if `dir` has no `index.html` (yet).
    pub fn new(dir: PathBuf, endpoints: &Endpoints) -> Self {
        match not_built(&dir) {
            Some(why) => tracing::warn!(dir = %dir.display(), "{why}"),
            None => tracing::info!(dir = %dir.display(), "web console served at /"),
        }
        for url in endpoints.websockets() {
            if ws_origin(url).is_none() {
                tracing::warn!(%url, "not a ws:// or wss:// URL: left out of the console's connect-src");
            }
        }
        let csp = HeaderValue::try_from(content_security_policy(endpoints))
            .expect("origins are checked to be header-safe");
        // A directory is not a page: no index.html appended, no redirect.
        let files = Compression::new(ServeDir::new(&dir).append_index_html_on_directories(false));
        Console { dir, files, csp }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn serve(&self, mut request: Request) -> Response {
        let built = tokio::fs::metadata(self.dir.join("index.html"))
            .await
            .is_ok_and(|m| m.is_file());
        if !built {
            let why = not_built(&self.dir).unwrap_or_else(|| "the web console is not built".into());
            return self.secure(ApiError::Unavailable(why).into_response());
        }
        let path = request.uri().path().to_owned();
        let is_file = has_extension(&path);
        if !is_file {
            *request.uri_mut() = Uri::from_static("/index.html");
        }
        let response = match self.files.clone().oneshot(request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
        let mut response = self.secure(response);
        let status = response.status();
        let immutable = is_file
            && path.starts_with("/assets/")
            && (status.is_success() || status == StatusCode::NOT_MODIFIED);
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            if immutable { IMMUTABLE } else { NO_CACHE },
        );
        // A gzipped body is another representation: its ETag is weak
        // (If-None-Match compares weakly, so revalidation still gets 304).
        if headers.contains_key(header::CONTENT_ENCODING)
            && let Some(etag) = headers.get(header::ETAG)
            && !etag.as_bytes().starts_with(b"W/")
            && let Ok(weak) = HeaderValue::from_bytes(&[b"W/", etag.as_bytes()].concat())
        {
            headers.insert(header::ETAG, weak);
        }
        response
    }

    /// `response` with the CSP and the other security headers.
    fn secure(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, value);
        }
        response
    }
}

/// The router's fallback: the console on paths the API does not own, the
/// API's 404 problem elsewhere (and everywhere when no console is set up).
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let Some(console) = state.console() else {
        return api::no_route().await.into_response();
    };
    if is_api_path(path) {
        return api::no_route().await.into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return console.secure(api::no_method().await.into_response());
    }
    console.serve(request).await
}

/// Why the console in `dir` cannot be served, or `None` if it can.
pub fn not_built(dir: &Path) -> Option<String> {
    let index = dir.join("index.html");
    (!index.is_file()).then(|| {
        format!(
            "the web console is not built: {} is missing; build it with `make web` \
             (or point --console-dir at a built console)",
            index.display()
        )
    })
}

/// Paths the API owns even when nothing there matches.
fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/") || path.starts_with("/.well-known/")
}

/// Whether the last segment of `path` names a file: `name.ext`.
fn has_extension(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    matches!(last.rsplit_once('.'), Some((name, ext)) if !name.is_empty() && !ext.is_empty())
}

/// The console's Content-Security-Policy: only its own files, and
/// connections to itself and to the broker's WebSocket origins.
pub fn content_security_policy(endpoints: &Endpoints) -> String {
    let mut connect = String::from("'self'");
    for origin in endpoints.websockets().filter_map(ws_origin) {
        if !connect.split(' ').any(|o| o == origin) {
            connect.push(' ');
            connect.push_str(&origin);
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// The origin (`scheme://host:port`, no user, path or query) of a `ws://`
/// or `wss://` URL; `None` for anything else or anything that could break
/// out of a CSP source expression.
pub fn ws_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let safe = |c: char| c.is_ascii_alphanumeric() || ".-_:[]".contains(c);
    if host_port.is_empty() || !host_port.chars().all(safe) {
        return None;
    }
    Some(format!("{scheme}://{}", host_port.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(ws: &str, wss: &str) -> Endpoints {
        Endpoints {
            mqtt: "mqtt://127.0.0.1:1883".into(),
            mqtts: Some("mqtts://127.0.0.1:8883".into()),
            ws: ws.into(),
            wss: Some(wss.into()),
        }
    }

    #[test]
    fn csp_connects_to_self_and_the_broker_websocket_origins_only() {
        let csp = content_security_policy(&endpoints(
            "ws://127.0.0.1:8083/mqtt",
            "wss://Broker.Example.com:8084/mqtt?x=1",
        ));
        assert_eq!(
            csp,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             font-src 'self'; connect-src 'self' ws://127.0.0.1:8083 wss://broker.example.com:8084; \
             manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        assert!(HeaderValue::try_from(csp).is_ok());
    }

    #[test]
    fn ws_origins_drop_path_and_user_and_refuse_what_is_not_a_websocket_url() {
        assert_eq!(
            ws_origin("wss://u:p@h.example:443/mqtt").as_deref(),
            Some("wss://h.example:443")
        );
        assert_eq!(
            ws_origin("ws://[::1]:8083").as_deref(),
            Some("ws://[::1]:8083")
        );
        assert_eq!(ws_origin("https://h.example/mqtt"), None);
        assert_eq!(ws_origin("ws://h.example; script-src *"), None);
        assert_eq!(ws_origin("ws:///mqtt"), None);
        assert_eq!(ws_origin("h.example:8083"), None);
        let csp = content_security_policy(&endpoints("nope", "ws://x 'unsafe-inline'"));
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }

    #[test]
    fn without_tls_the_csp_allows_the_plain_websocket_only() {
        let plain = Endpoints {
            wss: None,
            ..endpoints("ws://127.0.0.1:8083/mqtt", "")
        };
        let csp = content_security_policy(&plain);
        assert!(
            csp.contains("connect-src 'self' ws://127.0.0.1:8083;"),
            "{csp}"
        );
    }

    #[test]
    fn files_are_paths_whose_last_segment_has_an_extension() {
        assert!(has_extension("/assets/app-abc123.js"));
        assert!(has_extension("/favicon.svg"));
        assert!(!has_extension("/"));
        assert!(!has_extension("/tenants/abc/live"));
        assert!(!has_extension("/v1.2/tenants"));
        assert!(!has_extension("/.env"));
        assert!(!has_extension("/trailing."));
    }
}
