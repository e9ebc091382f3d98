//! The web console served by `app(state)` from a built directory: SPA
//! routing, files, caching, security headers, gzip, and what happens when
//! the console is not built. Through `oneshot`, on a real SQLite file.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;

use aerie_control::keys::Kek;
use aerie_control::{AppState, Config, app};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const INDEX: &str = "<!doctype html><html><head><title>Aerie console</title>\
    <script type=\"module\" src=\"/assets/app-abc123.js\"></script></head>\
    <body><div id=\"app\"></div></body></html>\n";
const SCRIPT: &str = "export function start() { document.getElementById('app').textContent = \
    'Aerie console, started'; }\nstart();\n";
const SECRET: &str = "the secret next to the console dir";

struct Console {
    app: Router,
    /// The console dir `dist/` and `secret.txt` beside it.
    _dir: tempfile::TempDir,
    _db: tempfile::TempDir,
}

/// A console built in `<tmp>/dist` (index.html, assets/app-abc123.js), a
/// secret file in `<tmp>` that no request may read.
async fn built() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("assets/app-abc123.js"), SCRIPT).unwrap();
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    console_in(dir, &dist).await
}

async fn console_in(dir: tempfile::TempDir, console_dir: &Path) -> Console {
    let mut config = Config::new(
        support::endpoints(),
        "http://127.0.0.1:8080",
        Kek::generate(),
    );
    config.console_dir = Some(console_dir.to_owned());
    let (db, url) = support::sqlite_url();
    let state = AppState::open(&url, config).await.expect("state");
    Console {
        app: app(state),
        _dir: dir,
        _db: db,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The CSP and the other security headers are there.
    #[track_caller]
    fn assert_secured(&self) {
        let csp = self.header(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self' ws://127.0.0.1:8083 wss://127.0.0.1:8084;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(self.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(self.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(self.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(
            self.header(header::HeaderName::from_static(
                "cross-origin-opener-policy"
            )),
            "same-origin"
        );
    }
}

impl Console {
    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[]).await
    }
}

#[tokio::test]
async fn app_routes_answer_index_html_uncached_with_the_security_headers() {
    let console = built().await;
    for path in [
        "/",
        "/tenants/abc/live",
        "/tenants/abc/tokens?x=1",
        "/assets",
    ] {
        let a = console.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.text(), INDEX, "{path}");
        assert!(
            a.header(header::CONTENT_TYPE).starts_with("text/html"),
            "{path}"
        );
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache", "{path}");
        a.assert_secured();
    }
    // index.html by its name is a file like any other: no-cache too.
    let a = console.get("/index.html").await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, INDEX.to_owned()));
    assert_eq!(a.header(header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn hashed_assets_are_javascript_cached_for_a_year_as_immutable() {
    let console = built().await;
    let a = console.get("/assets/app-abc123.js").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), SCRIPT);
    assert_eq!(a.header(header::CONTENT_TYPE), "text/javascript");
    assert_eq!(
        a.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    a.assert_secured();
}

#[tokio::test]
async fn a_missing_asset_is_a_plain_404_never_the_app() {
    let console = built().await;
    for path in [
        "/assets/app-gone99.js",
        "/favicon.ico",
        "/tenants/x/logo.png",
    ] {
        let a = console.get(path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!a.text().contains("<html"), "{path} answered the app");
        assert!(!a.header(header::CONTENT_TYPE).contains("html"), "{path}");
        // A 404 must not be cached for a year.
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache", "{path}");
        a.assert_secured();
    }
}

#[tokio::test]
async fn api_paths_keep_the_problem_404_and_the_api_answers() {
    let console = built().await;
    for path in [
        "/v1/nope",
        "/v1",
        "/v1/tenants/abc/nope.js",
        "/.well-known/nope",
    ] {
        let a = console.get(path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.header(header::CONTENT_TYPE), "application/problem+json");
        assert_eq!(a.json()["detail"], "route not found", "{path}");
        assert!(!a.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    }
    let a = console.get("/healthz").await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "ok\n".to_owned()));
    let a = console.get("/.well-known/jwks.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json()["keys"].is_array());
}

#[tokio::test]
async fn only_get_and_head_are_served_on_console_paths() {
    let console = built().await;
    let a = console.request(Method::HEAD, "/tenants/abc", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    assert!(a.header(header::CONTENT_TYPE).starts_with("text/html"));
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let a = console.request(method.clone(), "/tenants/abc", &[]).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(a.header(header::CONTENT_TYPE), "application/problem+json");
        a.assert_secured();
    }
}

#[tokio::test]
async fn no_path_escapes_the_console_dir() {
    let console = built().await;
    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/../secret",
    ] {
        let a = console.get(path).await;
        assert!(!a.text().contains(SECRET), "{path} read the secret");
        assert!(
            a.status == StatusCode::NOT_FOUND || a.text() == INDEX,
            "{path}: {}",
            a.status
        );
    }
}

#[tokio::test]
async fn a_console_not_built_is_a_503_problem_and_the_api_keeps_working() {
    for missing in ["no-such-dir", "empty"] {
        let dir = tempfile::tempdir().unwrap();
        let console_dir = dir.path().join(missing);
        if missing == "empty" {
            // The dir exists, with assets, but index.html is not there.
            std::fs::create_dir_all(console_dir.join("assets")).unwrap();
            std::fs::write(console_dir.join("assets/app-abc123.js"), SCRIPT).unwrap();
        }
        let console = console_in(dir, &console_dir).await;
        for path in ["/", "/tenants/abc", "/assets/app-abc123.js"] {
            let a = console.get(path).await;
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(a.header(header::CONTENT_TYPE), "application/problem+json");
            let detail = a.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains("make web"), "{detail}");
            assert!(
                detail.contains(&console_dir.display().to_string()),
                "{detail}"
            );
            a.assert_secured();
        }
        let a = console.get("/healthz").await;
        assert_eq!(a.status, StatusCode::OK);
        let a = console.get("/v1/tenants").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn revalidation_answers_304_by_etag_and_by_date() {
    let console = built().await;
    for path in ["/assets/app-abc123.js", "/tenants/abc"] {
        let first = console.get(path).await;
        let etag = first.header(header::ETAG).to_owned();
        let modified = first.header(header::LAST_MODIFIED).to_owned();
        assert!(!etag.is_empty() && !modified.is_empty(), "{path}");
        let by_etag = console
            .request(Method::GET, path, &[("if-none-match", &etag)])
            .await;
        assert_eq!(by_etag.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(by_etag.body.is_empty());
        assert_eq!(
            by_etag.header(header::CACHE_CONTROL),
            first.header(header::CACHE_CONTROL)
        );
        by_etag.assert_secured();
        let by_date = console
            .request(Method::GET, path, &[("if-modified-since", &modified)])
            .await;
        assert_eq!(by_date.status, StatusCode::NOT_MODIFIED, "{path}");
        let changed = console
            .request(Method::GET, path, &[("if-none-match", "\"other\"")])
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn text_is_gzipped_when_the_client_accepts_it() {
    let console = built().await;
    for path in ["/tenants/abc", "/assets/app-abc123.js"] {
        let plain = console.get(path).await;
        assert!(!plain.headers.contains_key(header::CONTENT_ENCODING));
        let gz = console
            .request(Method::GET, path, &[("accept-encoding", "gzip")])
            .await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(gz.header(header::CONTENT_ENCODING), "gzip", "{path}");
        assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "{path}: not a gzip stream");
        assert_ne!(gz.body, plain.body);
        // Another representation, a weak ETag; revalidating with it still works.
        let etag = gz.header(header::ETAG).to_owned();
        assert_eq!(etag, format!("W/{}", plain.header(header::ETAG)));
        let again = console
            .request(
                Method::GET,
                path,
                &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        gz.assert_secured();
    }
}
