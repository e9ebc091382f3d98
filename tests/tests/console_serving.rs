//! The web console through the real binary: `aerie serve` and `aerie
//! control` serve a built console at `/` from `--console-dir` /
//! `AERIE_CONSOLE_DIR`, and answer 503 while it is not built.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aerie_e2e::ServerOptions;
use aerie_e2e::http::send;
use aerie_e2e::server::{aerie_bin, free_addr};

const INDEX: &str = "<!doctype html><title>Aerie</title><script type=\"module\" \
    src=\"/assets/app-abc123.js\"></script><div id=\"app\"></div>\n";

/// A built console in `dir`: index.html and one hashed script.
fn build_console(dir: &Path) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), INDEX).unwrap();
    std::fs::write(dir.join("assets/app-abc123.js"), "console.log('aerie');\n").unwrap();
}

/// The console answers at `http`: app routes, an asset, a missing asset, and
/// the API's own 404 next to it. `ws` is the one WebSocket origin the CSP
/// allows (no TLS is served, so no wss:// one).
fn assert_console_served(http: SocketAddr, ws: &str) {
    let page = send(http, "GET", "/tenants/abc/live", &[], "");
    assert_eq!((page.status, page.body.as_str()), (200, INDEX));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains(&format!("connect-src 'self' {ws};")), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let script = send(http, "GET", "/assets/app-abc123.js", &[], "");
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript"));
    assert_eq!(
        script.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let missing = send(http, "GET", "/assets/app-gone.js", &[], "");
    assert_eq!(missing.status, 404);
    assert!(!missing.body.contains("<!doctype"));
    let api = send(http, "GET", "/v1/nope", &[], "");
    assert_eq!(api.status, 404);
    assert_eq!(api.header("content-type"), Some("application/problem+json"));
}

/// The `endpoints` a new tenant of a new account `email` is shown.
fn tenant_endpoints(server: &aerie_e2e::Server, email: &str) -> serde_json::Value {
    let tenant = aerie_e2e::tenants::tenant(server, email);
    let shown = server
        .api(
            "GET",
            &format!("/v1/tenants/{}", tenant.id),
            Some(&tenant.api_key),
            None,
        )
        .expect(200);
    shown["endpoints"].clone()
}

#[test]
fn aerie_serve_serves_a_built_console_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    build_console(dir.path());
    let server = ServerOptions::default()
        .anonymous(false)
        .args(&["--console-dir", dir.path().to_str().unwrap()])
        .start();
    assert_console_served(server.http, &format!("ws://{}", server.ws));
    // /metrics, routed by the binary, is still /metrics.
    let metrics = server.http_request("GET", "/metrics", &[], "");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("# TYPE"));
}

#[test]
fn aerie_serve_shows_tenants_the_public_addresses_and_the_console_may_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    build_console(dir.path());
    let server = ServerOptions::default()
        .anonymous(false)
        .args(&["--console-dir", dir.path().to_str().unwrap()])
        .args(&["--public-ws", "ws://broker.example.com/mqtt"])
        .env("AERIE_PUBLIC_MQTT", "mqtt://broker.example.com:1883")
        .start();
    let endpoints = &tenant_endpoints(&server, "public@example.com");
    assert_eq!(endpoints["mqtt"], "mqtt://broker.example.com:1883");
    assert_eq!(endpoints["ws"], "ws://broker.example.com/mqtt");
    // No TLS listener is served (no --tls-cert), so none is shown.
    assert_eq!(endpoints.get("mqtts"), None, "{endpoints}");
    assert_eq!(endpoints.get("wss"), None, "{endpoints}");
    assert_console_served(server.http, "ws://broker.example.com");
}

#[test]
fn aerie_serve_shows_its_tls_endpoints_only_when_it_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    build_console(dir.path());
    let cert = aerie_e2e::tls::TestCert::localhost();
    let server = cert
        .server_options()
        .anonymous(false)
        .args(&["--console-dir", dir.path().to_str().unwrap()])
        .start();
    let endpoints = &tenant_endpoints(&server, "tls@example.com");
    assert_eq!(endpoints["mqtts"], format!("mqtts://{}", server.mqtts));
    assert_eq!(endpoints["wss"], format!("wss://{}/mqtt", server.wss));
    // Both listeners are really up where they are shown.
    for addr in [server.mqtts, server.wss] {
        assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr}");
    }
}

#[test]
fn aerie_serve_without_a_built_console_answers_503_and_the_api_works() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("web/dist");
    let server = ServerOptions::default()
        .anonymous(false)
        .env("AERIE_CONSOLE_DIR", missing.to_str().unwrap())
        .start();
    let detail = server.http_request("GET", "/", &[], "").problem(503);
    assert!(detail.contains("make web"), "{detail}");
    assert!(detail.contains(missing.to_str().unwrap()), "{detail}");
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_owned()));
    server
        .api(
            "POST",
            "/v1/accounts",
            None,
            Some(&serde_json::json!({
                "email": "console@example.com", "password": "correct horse battery"
            })),
        )
        .expect(201);
}

/// `aerie control` on a SQLite file, killed when dropped.
struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn aerie_control_serves_the_console_too() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("dist");
    build_console(&console);
    let http = free_addr();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let mut cmd = Command::new(aerie_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("AERIE_") {
            cmd.env_remove(key);
        }
    }
    let mut control = Control(
        cmd.args([
            "control",
            "--http",
            &http.to_string(),
            "--database-url",
            &db,
        ])
        .args(["--public-ws", "ws://broker.example.com:8083/mqtt"])
        .arg("--console-dir")
        .arg(&console)
        .env("AERIE_SECRET_KEY", "ab".repeat(32))
        .env("AERIE_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn aerie control"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = std::net::TcpStream::connect(http).is_ok()
            && send(http, "GET", "/readyz", &[], "").status == 200;
        if up {
            break;
        }
        if let Ok(Some(status)) = control.0.try_wait() {
            panic!("aerie control exited: {status}");
        }
        assert!(Instant::now() < deadline, "aerie control did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_console_served(http, "ws://broker.example.com:8083");
}

#[test]
fn a_cross_site_form_post_with_the_session_cookie_is_refused_and_counted() {
    let server = ServerOptions::default().anonymous(false).start();
    let signed_up = server.http_request(
        "POST",
        "/v1/accounts",
        &[],
        r#"{"email":"forms@example.com","password":"correct horse battery"}"#,
    );
    assert_eq!(signed_up.status, 201, "{}", signed_up.body);
    let set_cookie = signed_up.header("set-cookie").expect("a session cookie");
    assert!(
        set_cookie.contains("; HttpOnly; SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap();
    let csrf = signed_up.json()["csrf_token"].as_str().unwrap().to_owned();

    // Another site's <form method=post action=…/v1/tenants>, had the browser
    // sent the cookie: its Origin, a form body, no CSRF header.
    let forged = server.http_request(
        "POST",
        "/v1/tenants",
        &[
            ("cookie", cookie),
            ("origin", "https://evil.example"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "",
    );
    let detail = forged.problem(403);
    assert!(detail.contains("another site"), "{detail}");
    server.wait_metric(
        "aerie_control_csrf_refused_total",
        "reason=\"cross_origin\"",
        1.0,
    );
    // The console's own request, with the session's CSRF token, passes.
    let origin = format!("http://{}", server.http);
    let created = server.http_request(
        "POST",
        "/v1/tenants",
        &[
            ("cookie", cookie),
            ("origin", &origin),
            ("x-aerie-csrf", &csrf),
        ],
        r#"{"name":"from the console"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let tenants = server.http_request("GET", "/v1/tenants", &[("cookie", cookie)], "");
    assert_eq!(tenants.json().as_array().map(Vec::len), Some(1));
}
