//! `/v1/openapi.json`: it validates as OpenAPI 3.1 (openapi-spec-validator
//! from PyPI, installed by `make test-deps`), and it lists exactly what the
//! router serves.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use aerie_control::keys::Kek;
use aerie_control::{AppState, Config, app};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// DESIGN.md's "REST API v1" list (plus listing and deleting issuers, the
/// operator routes under /v1/admin, and from issue 14 account API keys, the
/// signed-in account, log-out and one token by its jti for the Terraform
/// provider): the contract the document must match.
const CONTRACT: &[(&str, &str)] = &[
    ("POST", "/v1/accounts"),
    ("POST", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
    ("GET", "/v1/account"),
    ("POST", "/v1/account/api-keys"),
    ("GET", "/v1/account/api-keys"),
    ("DELETE", "/v1/account/api-keys/{key_id}"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/{tid}"),
    ("PATCH", "/v1/tenants/{tid}"),
    ("DELETE", "/v1/tenants/{tid}"),
    ("POST", "/v1/tenants/{tid}/api-keys"),
    ("GET", "/v1/tenants/{tid}/api-keys"),
    ("DELETE", "/v1/tenants/{tid}/api-keys/{key_id}"),
    ("GET", "/v1/tenants/{tid}/tokens"),
    ("POST", "/v1/tenants/{tid}/tokens"),
    ("GET", "/v1/tenants/{tid}/tokens/{jti}"),
    ("DELETE", "/v1/tenants/{tid}/tokens/{jti}"),
    ("POST", "/v1/tenants/{tid}/issuers"),
    ("GET", "/v1/tenants/{tid}/issuers"),
    ("DELETE", "/v1/tenants/{tid}/issuers/{issuer_id}"),
    ("GET", "/v1/admin/tenants"),
    ("PATCH", "/v1/admin/tenants/{tid}/limits"),
    ("POST", "/v1/admin/tenants/{tid}/suspend"),
    ("POST", "/v1/admin/tenants/{tid}/resume"),
    ("GET", "/v1/tenants/{tid}/clients"),
    ("DELETE", "/v1/tenants/{tid}/clients/{client_id}"),
    ("POST", "/v1/tenants/{tid}/messages"),
    ("GET", "/v1/tenants/{tid}/retained"),
    ("GET", "/v1/tenants/{tid}/usage"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Documented here, served by the `aerie` binary next to this router
/// (services/aerie/src/http.rs), so the control plane alone answers 404.
const SERVED_BY_THE_BINARY: &[(&str, &str)] = &[("GET", "/metrics")];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn router() -> (Router, tempfile::TempDir) {
    let (dir, url) = support::sqlite_url();
    let endpoints = support::endpoints();
    let config = Config::new(endpoints, "http://127.0.0.1:8080", Kek::generate());
    let state = AppState::open(&url, config).await.expect("state");
    (app(state), dir)
}

/// Status, content type and body (JSON if it parses, else a JSON string).
async fn request(app: &Router, method: &str, path: &str) -> (StatusCode, String, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    support::read(app.clone().oneshot(req).await.unwrap()).await
}

/// Whether the answer is one of the router's fallbacks (no such route or method).
fn is_fallback(status: StatusCode, body: &Value) -> bool {
    (status == StatusCode::NOT_FOUND && body["detail"] == "route not found")
        || status == StatusCode::METHOD_NOT_ALLOWED
}

/// The document as served.
async fn served_document(app: &Router) -> Value {
    let (status, content_type, doc) = request(app, "GET", "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    doc
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

/// A concrete request path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{tid}", "abcdefghij")
        .replace("{key_id}", "00000000-0000-0000-0000-000000000000")
        .replace("{jti}", "some-jti")
        .replace("{client_id}", "some-client")
}

#[tokio::test]
async fn openapi_document_passes_openapi_spec_validator() {
    let (app, _dir) = router().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let missing = "openapi-spec-validator is needed: run `make test-deps` \
                   (pip install openapi-spec-validator, see the Makefile for the version)";
    let probe = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot be run ({e}); {missing}"));
    assert!(
        probe.status.success(),
        "{missing}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");

    // It must be able to fail: a broken copy is refused.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"] = Value::String("none".into());
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(!out.status.success(), "a broken document passed");
}

#[tokio::test]
async fn the_document_lists_the_design_contract_exactly() {
    let (app, _dir) = router().await;
    let documented = operations(&served_document(&app).await);
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = contract.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&contract).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not documented: {missing:?}; documented but not in the contract: {extra:?}"
    );
    // The document the crate builds is the one it serves.
    let built: Value = serde_json::to_value(aerie_control::openapi::document()).unwrap();
    assert_eq!(operations(&built), documented);
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_nothing_else_is() {
    let (app, _dir) = router().await;
    let documented = operations(&served_document(&app).await);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            let op = (method.to_owned(), path.clone());
            let (status, _, body) = request(&app, method, &concrete(path)).await;
            let by_the_binary = SERVED_BY_THE_BINARY.iter().any(|(_, p)| p == path);
            if by_the_binary {
                // Not routed here at all: every method is the 404 fallback.
                assert!(
                    status == StatusCode::NOT_FOUND && is_fallback(status, &body),
                    "{method} {path}"
                );
            } else if documented.contains(&op) {
                assert!(
                    !is_fallback(status, &body),
                    "{method} {path} is documented but not routed: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented, yet answered: {body}"
                );
                assert_eq!(body["detail"], "method not allowed on this route");
            }
        }
    }
    // Undocumented paths get the 404 problem.
    for path in ["/v1/nope", "/v1/tenants/abcdefghij/nope", "/metrics/x", "/"] {
        let (status, content_type, body) = request(&app, "GET", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["detail"], "route not found");
    }
}

#[tokio::test]
async fn operations_carry_summary_tag_security_and_problem_responses() {
    let doc = serde_json::to_value(aerie_control::openapi::document()).unwrap();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let cookie = &doc["components"]["securitySchemes"]["session_cookie"];
    assert_eq!(cookie["type"], "apiKey");
    assert_eq!(cookie["in"], "cookie");
    assert_eq!(cookie["name"], "aerie_session");
    assert!(
        cookie["description"]
            .as_str()
            .unwrap()
            .contains("X-Aerie-CSRF")
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let open = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/.well-known/jwks.json",
        "/v1/accounts",
        "/v1/sessions",
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: summary"
            );
            assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{name}: tag");
            let responses = op["responses"].as_object().unwrap();
            if open.contains(&path.as_str()) {
                assert!(op.get("security").is_none(), "{name}: no security");
            } else if path.starts_with("/v1/admin/") {
                // The admin token only: never the session cookie.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{name}"
                );
            } else {
                // A session token or the console's cookie, which a
                // state-changing request must back with its CSRF header.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}, {"session_cookie": []}]),
                    "{name}"
                );
                if method != "get" {
                    assert!(responses.contains_key("403"), "{name}: 403");
                }
            }
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{name}: 401");
                assert!(responses.contains_key("500"), "{name}: 500");
            }
            if path.contains("{tid}") {
                assert!(responses.contains_key("404"), "{name}: 404");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{name}: {status}");
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{name} {status}"
                    );
                }
            }
        }
    }
    // The broker routes say they may answer 503.
    for path in [
        "/v1/tenants/{tid}/clients",
        "/v1/tenants/{tid}/messages",
        "/v1/tenants/{tid}/retained",
    ] {
        let item = &doc["paths"][path];
        let op = item.as_object().unwrap().values().next().unwrap();
        assert!(op["responses"]["503"].is_object(), "{path}");
    }
}
