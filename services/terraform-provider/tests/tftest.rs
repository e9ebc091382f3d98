//! The `terraform test` suites of tests/tftest (`*.tftest.hcl`), run by real
//! Terraform through this provider against a real `aerie serve`: create,
//! read, update and delete of every resource and the data sources
//! (resources/crud.tftest.hcl), ten operations at once
//! (concurrent/), and import (import/, a root module of
//! its own: Terraform allows import blocks only there). Each directory is a
//! root module, so none needs `terraform init`. What a suite cannot see (the account left empty
//! after its destroy) is checked here.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;

use aerie_e2e::idp::IdpKey;
use serde_json::json;
use support::{Workspace, account, copy_dir, shared_server};

/// `terraform test` of the suites in tests/tftest/`dir`, in `tf`, with
/// `vars`: its output (it must pass).
fn run_suites(dir: &str, tf: &Workspace, vars: &serde_json::Value) -> String {
    let suites = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tftest")
        .join(dir);
    copy_dir(&suites, tf.dir.path());
    std::fs::write(tf.dir.path().join("vars.tfvars.json"), vars.to_string()).unwrap();
    // No `terraform init`: the provider comes from dev_overrides, and each
    // suite's directory is a root module (init would ask the registry).
    tf.ok(&["test", "-no-color", "-var-file=vars.tfvars.json"])
}

#[test]
fn terraform_test_suites_pass_and_leave_the_account_empty() {
    let server = shared_server();
    let (session, key) = account(&server, "suites@example.com");
    let (pem, jwks) = issuer_keys();

    // What the import suite imports, made outside Terraform.
    let legacy = server
        .api(
            "POST",
            "/v1/tenants",
            Some(&session),
            Some(&json!({"name": "legacy"})),
        )
        .expect(201);
    let tid = legacy["id"].as_str().unwrap();
    let legacy_key = server
        .api(
            "POST",
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&session),
            Some(&json!({"name": "legacy-key"})),
        )
        .expect(201);
    let legacy_issuer = server
        .api(
            "POST",
            &format!("/v1/tenants/{tid}/issuers"),
            Some(&session),
            Some(&json!({"issuer": "https://legacy.example.com/", "public_key_pem": pem})),
        )
        .expect(201);

    let resources = json!({"issuer_pem": pem, "issuer_jwks": jwks});
    let out = run_suites("resources", &Workspace::new(&server, &key), &resources);
    assert!(out.contains("crud.tftest.hcl... pass"), "{out}");
    assert!(out.contains("5 passed, 0 failed"), "{out}");
    let out = run_suites("concurrent", &Workspace::new(&server, &key), &json!({}));
    assert!(out.contains("concurrent.tftest.hcl... pass"), "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    let import = json!({
        "issuer_pem": pem,
        "tenant_id": tid,
        "key_id": legacy_key["id"],
        "issuer_id": legacy_issuer["id"],
    });
    let out = run_suites("import", &Workspace::new(&server, &key), &import);
    assert!(out.contains("import.tftest.hcl... pass"), "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");

    // Each suite destroys what it made (the imported tenant too).
    let left = server
        .api("GET", "/v1/tenants", Some(&session), None)
        .expect(200);
    assert_eq!(left, json!([]), "{out}");
}

/// An issuer's keys: an Ed25519 public key PEM, and a JWK set (JSON text).
fn issuer_keys() -> (String, String) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwks = json!({"keys": [IdpKey::new("idp-1").jwk()]});
    (pair.public_key_pem(), jwks.to_string())
}
