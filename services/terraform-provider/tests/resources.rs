//! `aerie_api_key`, `aerie_token` and `aerie_issuer` where a `terraform
//! test` suite cannot reach: changes made outside Terraform between runs
//! (through the REST API), a token used over MQTT, diagnostics of refused
//! input, a token that expires, and what `TF_LOG=trace` shows.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::tenants::with_password;
use aerie_proto::{ProtocolVersion, ReasonCode};
use serde_json::json;
use support::{Workspace, account, shared_server};

/// A tenant with an API key, a token and an issuer, and their outputs.
const FLEET: &str = r#"
resource "aerie_tenant" "plant" {
  name = "plant"
}

resource "aerie_api_key" "ops" {
  tenant_id = aerie_tenant.plant.id
  name      = "ops"
}

resource "aerie_token" "device" {
  tenant_id = aerie_tenant.plant.id
  client_id = "sensor-1"
}

resource "aerie_issuer" "sso" {
  tenant_id = aerie_tenant.plant.id
  issuer    = "https://sso.example.com/"
  jwks_url  = "https://sso.example.com/jwks.json"
}

output "ids" {
  value = {
    tenant = aerie_tenant.plant.id
    key    = aerie_api_key.ops.id
    jti    = aerie_token.device.jti
    issuer = aerie_issuer.sso.id
  }
}

output "secrets" {
  value     = { key = aerie_api_key.ops.key, token = aerie_token.device.token }
  sensitive = true
}
"#;

#[test]
fn keys_tokens_and_issuers_deleted_outside_terraform_are_planned_again() {
    let server = shared_server();
    let (session, key) = account(&server, "drift@example.com");
    let tf = Workspace::new(&server, &key);
    tf.configure(FLEET);
    tf.apply();
    let (code, plan) = tf.plan();
    assert_eq!(code, 0, "nothing to do after apply: {plan}");
    let ids = tf.output("ids");
    let tid = ids["tenant"].as_str().unwrap();
    let path = |what: &str, id: &str| format!("/v1/tenants/{tid}/{what}/{id}");

    // Revoked, revoked and deleted outside Terraform: each created again.
    let (key_id, jti) = (ids["key"].as_str().unwrap(), ids["jti"].as_str().unwrap());
    let issuer_id = ids["issuer"].as_str().unwrap();
    for gone in [
        path("api-keys", key_id),
        path("tokens", jti),
        path("issuers", issuer_id),
    ] {
        server
            .api("DELETE", &gone, Some(&session), None)
            .expect(204);
    }
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    for address in [
        "aerie_api_key.ops",
        "aerie_token.device",
        "aerie_issuer.sso",
    ] {
        assert!(
            plan.contains(&format!("# {address} will be created")),
            "{address}: {plan}"
        );
    }
    assert!(
        plan.contains("3 to add, 0 to change, 0 to destroy"),
        "{plan}"
    );
    tf.apply();
    let again = tf.output("ids");
    assert_eq!(again["tenant"], tid);
    for what in ["key", "jti", "issuer"] {
        assert_ne!(again[what], ids[what], "{what} is a new one");
    }
    let live = server
        .api(
            "GET",
            &format!("/v1/tenants/{tid}/issuers"),
            Some(&session),
            None,
        )
        .expect(200);
    assert_eq!(live[0]["id"], again["issuer"], "{live}");
    let (code, plan) = tf.plan();
    assert_eq!(code, 0, "settled: {plan}");

    // The tenant deleted outside: everything in it is planned again.
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{tid}"),
            Some(&session),
            None,
        )
        .expect(204);
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(
        plan.contains("4 to add, 0 to change, 0 to destroy"),
        "{plan}"
    );
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}

#[test]
fn a_token_connects_over_mqtt_and_once_destroyed_is_refused_within_2_s() {
    let server = shared_server();
    let (_, key) = account(&server, "devices@example.com");
    let tf = Workspace::new(&server, &key);
    tf.configure(FLEET);
    // Trace logs of a whole apply: no secret of what it creates is in them.
    let out = tf.terraform_with(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[("TF_LOG", "trace")],
    );
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{logs}");
    assert!(
        logs.contains("aerie_token"),
        "trace logs were written: {}",
        logs.len()
    );
    let secrets = tf.output("secrets");
    let token = secrets["token"].as_str().unwrap().to_owned();
    let api_key = secrets["key"].as_str().unwrap();
    assert!(api_key.starts_with("aerie_"), "{secrets}");
    for secret in [token.as_str(), api_key, key.as_str()] {
        assert!(!logs.contains(secret), "a secret is in TF_LOG=trace output");
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connect = |token: &str| {
        let packet = with_password(ProtocolVersion::V5, "sensor-1", Some(token));
        runtime.block_on(async {
            let (_client, ack) = RawClient::connect_with(server.mqtt, packet).await;
            ack.reason
        })
    };
    assert_eq!(connect(&token), ReasonCode::SUCCESS);

    // Destroyed: revoked; a CONNECT with it is refused within 2 s.
    tf.ok(&[
        "destroy",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-target=aerie_token.device",
    ]);
    let destroyed = Instant::now();
    let refused = loop {
        let reason = connect(&token);
        if reason != ReasonCode::SUCCESS || destroyed.elapsed() > Duration::from_secs(2) {
            break reason;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        refused,
        ReasonCode::NOT_AUTHORIZED,
        "after {:?}",
        destroyed.elapsed()
    );
    assert!(destroyed.elapsed() <= Duration::from_secs(2));
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}

#[test]
fn refused_input_is_a_diagnostic_on_its_attribute() {
    let server = shared_server();
    let (session, key) = account(&server, "refused@example.com");
    let made = server
        .api(
            "POST",
            "/v1/tenants",
            Some(&session),
            Some(&json!({"name": "real"})),
        )
        .expect(201);
    let tid = made["id"].as_str().unwrap();
    let tf = Workspace::new(&server, &key);

    // Not exactly one key source, a tenant looked up by both id and name:
    // refused at plan time, before any call.
    tf.configure(&format!(
        r#"resource "aerie_issuer" "two" {{
  tenant_id = "{tid}"
  issuer    = "https://two.example.com/"
  jwks_url  = "https://two.example.com/jwks.json"
  jwks      = jsonencode({{ keys = [] }})
}}

data "aerie_tenant" "both" {{
  id   = "{tid}"
  name = "real"
}}
"#
    ));
    let out = tf.terraform(&["plan", "-input=false", "-no-color"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Error: `jwks` is a second key source: give exactly one of `jwks_url`, `jwks` and `public_key_pem`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("jwks      = jsonencode"),
        "the attribute's line: {stderr}"
    );
    assert!(
        stderr.contains("Error: give exactly one of `id` and `name`"),
        "the tenant data source looks up by one: {stderr}"
    );

    // What the API refuses, each on its attribute, in one apply.
    tf.configure(&format!(
        r#"resource "aerie_tenant" "empty" {{
  name = ""
}}

resource "aerie_api_key" "nowhere" {{
  tenant_id = "nosuchtnt0"
  name      = "ops"
}}

resource "aerie_issuer" "bad_pem" {{
  tenant_id      = "{tid}"
  issuer         = "https://bad.example.com/"
  public_key_pem = "not a pem"
}}

resource "aerie_token" "too_long" {{
  tenant_id   = "{tid}"
  ttl_seconds = 5
}}
"#
    ));
    let stderr = tf.apply_fails();
    for (error, line) in [
        (
            "cannot create the tenant: name must have 1 to 100 characters",
            "name = \"\"",
        ),
        (
            "cannot create the API key: tenant not found",
            "tenant_id = \"nosuchtnt0\"",
        ),
        (
            "cannot register the issuer: public_key_pem is not a PEM document",
            "public_key_pem = \"not a pem\"",
        ),
        (
            "cannot mint the token: ttl_seconds must be between 60 and 2592000",
            "ttl_seconds = 5",
        ),
    ] {
        let at = stderr
            .find(&format!("Error: {error}"))
            .unwrap_or_else(|| panic!("{error}: {stderr}"));
        let shown = &stderr[at..];
        let next = shown[1..].find("Error:").map_or(shown.len(), |n| n + 1);
        assert!(
            shown[..next].contains(line),
            "{error} is shown on {line}: {stderr}"
        );
    }
    // Nothing was made.
    let issuers = server
        .api(
            "GET",
            &format!("/v1/tenants/{tid}/issuers"),
            Some(&session),
            None,
        )
        .expect(200);
    assert_eq!(issuers, json!([]));
    let tenants = server
        .api("GET", "/v1/tenants", Some(&session), None)
        .expect(200);
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
}

#[test]
fn a_token_past_its_expires_at_is_planned_for_replacement() {
    let server = shared_server();
    let (_, key) = account(&server, "expiry@example.com");
    let tf = Workspace::new(&server, &key);
    // The shortest lifetime the API gives: this test waits it out (beside
    // the others, which run meanwhile).
    tf.configure(
        r#"resource "aerie_tenant" "plant" {
  name = "plant"
}

resource "aerie_token" "short" {
  tenant_id   = aerie_tenant.plant.id
  ttl_seconds = 60
}

output "token" {
  value = { jti = aerie_token.short.jti, expires_at = aerie_token.short.expires_at }
}
"#,
    );
    tf.apply();
    let (code, plan) = tf.plan();
    assert_eq!(code, 0, "a live token stays: {plan}");
    let before = tf.output("token");
    let expires_at = before["expires_at"].as_str().unwrap();
    let expires_at =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires_at - time::OffsetDateTime::now_utc();
    std::thread::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(200));

    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(
        plan.contains("aerie_token.short must be replaced"),
        "{plan}"
    );
    assert!(plan.contains("# forces replacement"), "{plan}");
    assert!(
        plan.contains("1 to add, 0 to change, 1 to destroy"),
        "{plan}"
    );
    tf.apply();
    let after = tf.output("token");
    assert_ne!(after["jti"], before["jti"]);
    let (code, plan) = tf.plan();
    assert_eq!(code, 0, "the new token is live: {plan}");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}
