//! The control plane's acceptance flow through the real `aerie serve`, on its
//! embedded SQLite and on a real Postgres 15: sign up → tenant → API key →
//! mint a device token with the API key → the JWT verifies against
//! `/.well-known/jwks.json` with an independent library (jsonwebtoken) →
//! revoke → key rotation keeps old tokens valid until they expire → an
//! account API key acts as the account until it is deleted.

use std::process::Command;

use aerie_e2e::Server;
use aerie_e2e::server::aerie_bin;
use aerie_testdb::verify_jwt;
use serde_json::{Value, json};

#[tokio::test]
async fn sign_up_to_key_rotation_on_embedded_sqlite() {
    let server = Server::start(&[]);
    acceptance_flow(&server, &[]);
}

#[tokio::test]
async fn sign_up_to_key_rotation_on_postgres() {
    let url = aerie_testdb::postgres_url().await;
    let server = Server::start(&["--database-url", &url]);
    // The tenant lives in Postgres, not in the data dir's SQLite file.
    assert!(!server.data_dir.join("control.db").exists());
    acceptance_flow(&server, &["--database-url", &url]);
}

fn acceptance_flow(server: &Server, database: &[&str]) {
    let issuer = format!("http://{}", server.http);

    // A person signs up and creates a tenant.
    let account = server
        .api(
            "POST",
            "/v1/accounts",
            None,
            Some(&json!({"email": " Ada@Example.COM ", "password": "correct horse battery"})),
        )
        .expect(201);
    let session = account["token"].as_str().unwrap().to_owned();
    let tenant = server
        .api(
            "POST",
            "/v1/tenants",
            Some(&session),
            Some(&json!({"name": "greenhouse"})),
        )
        .expect(201);
    let tid = tenant["id"].as_str().unwrap().to_owned();
    assert_eq!(tenant["plan"], "free");
    assert!(tenant["limits"]["connections"].as_u64().unwrap() > 0);
    assert_eq!(
        tenant["endpoints"]["mqtt"],
        format!("mqtt://{}", server.mqtt),
        "{tenant}"
    );

    // The tenant's automation gets an API key (shown once) and mints with it.
    let key = server
        .api(
            "POST",
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&session),
            Some(&json!({"name": "ci"})),
        )
        .expect(201);
    let api_key = key["key"].as_str().unwrap().to_owned();
    let listed = server
        .api(
            "GET",
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&api_key),
            None,
        )
        .expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("key").is_none(), "the key is shown only once");

    let minted = mint(server, &tid, &api_key, "sensor-1");
    let jwks = server
        .api("GET", "/.well-known/jwks.json", None, None)
        .expect(200);
    let claims = verify_jwt(minted["token"].as_str().unwrap(), &jwks, &issuer)
        .expect("the token verifies against the JWKS");
    assert_eq!(claims["tnt"], tid.as_str());
    assert_eq!(claims["client_id"], "sensor-1");
    assert_eq!(claims["aud"], "mqtt");
    assert_eq!(claims["jti"], minted["jti"]);
    assert_eq!(claims["acl"]["pub"], json!(["sensors/${client_id}/#"]));

    // Revoke the token; an unknown jti is 404, not a silent success.
    let jti = minted["jti"].as_str().unwrap();
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{tid}/tokens/{jti}"),
            Some(&api_key),
            None,
        )
        .expect(204);
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{tid}/tokens/no-such-jti"),
            Some(&api_key),
            None,
        )
        .problem(404);

    // Rotate the signing key while the server runs: old tokens keep verifying.
    let before = mint(server, &tid, &api_key, "sensor-2");
    let new_kid = rotate_keys(server, database);
    let after = mint(server, &tid, &api_key, "sensor-3");
    assert_eq!(
        kid_of(&after["token"]),
        new_kid,
        "new tokens use the new key"
    );
    assert_ne!(kid_of(&before["token"]), new_kid);
    let jwks = server
        .api("GET", "/.well-known/jwks.json", None, None)
        .expect(200);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    for token in [&before["token"], &after["token"]] {
        verify_jwt(token.as_str().unwrap(), &jwks, &issuer)
            .expect("old and new tokens verify after rotation");
    }

    // A revoked API key is refused at once.
    let key_id = key["id"].as_str().unwrap();
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{tid}/api-keys/{key_id}"),
            Some(&session),
            None,
        )
        .expect(204);
    server
        .api("GET", &format!("/v1/tenants/{tid}"), Some(&api_key), None)
        .problem(401);

    account_api_key_flow(server, &session, &tid);
}

/// A machine acting as the account: an account API key (shown once) lists,
/// creates, renames and deletes tenants as the session does, cannot manage
/// account keys, and is refused at once when deleted.
fn account_api_key_flow(server: &Server, session: &str, tid: &str) {
    let created = server
        .api(
            "POST",
            "/v1/account/api-keys",
            Some(session),
            Some(&json!({"name": "terraform"})),
        )
        .expect(201);
    let key = created["key"].as_str().unwrap().to_owned();
    let listed = server
        .api("GET", "/v1/account/api-keys", Some(session), None)
        .expect(200);
    assert_eq!(
        listed,
        json!([{"id": created["id"], "name": "terraform",
                               "created_at": created["created_at"]}])
    );
    let tenants = server
        .api("GET", "/v1/tenants", Some(&key), None)
        .expect(200);
    assert_eq!(tenants[0]["id"], tid);
    let made = server
        .api(
            "POST",
            "/v1/tenants",
            Some(&key),
            Some(&json!({"name": "barn"})),
        )
        .expect(201);
    let made = format!("/v1/tenants/{}", made["id"].as_str().unwrap());
    let renamed = server
        .api(
            "PATCH",
            &made,
            Some(&key),
            Some(&json!({"name": "big barn"})),
        )
        .expect(200);
    assert_eq!(renamed["name"], "big barn");
    server.api("DELETE", &made, Some(&key), None).expect(204);
    let refused = server
        .api(
            "POST",
            "/v1/account/api-keys",
            Some(&key),
            Some(&json!({"name": "successor"})),
        )
        .problem(403);
    assert!(refused.contains("session token"), "{refused}");

    let id = created["id"].as_str().unwrap();
    server
        .api(
            "DELETE",
            &format!("/v1/account/api-keys/{id}"),
            Some(session),
            None,
        )
        .expect(204);
    let gone = server
        .api("GET", "/v1/tenants", Some(&key), None)
        .problem(401);
    assert_eq!(gone, "unknown or deleted account API key");
}

/// Any API key trying to manage account keys is refused and counted by the
/// kind of credential (never the key or the account).
#[test]
fn account_key_management_refusals_are_counted_by_credential() {
    let server = Server::start(&[]);
    let t = aerie_e2e::tenants::tenant(&server, "machines@example.com");
    let account_key = server
        .api(
            "POST",
            "/v1/account/api-keys",
            Some(&t.session),
            Some(&json!({"name": "terraform"})),
        )
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for key in [&account_key, &t.api_key] {
        server
            .api("GET", "/v1/account/api-keys", Some(key), None)
            .problem(403);
    }
    const NAME: &str = "aerie_control_account_key_management_refused_total";
    for credential in ["account_api_key", "tenant_api_key"] {
        let labels = format!(r#"credential="{credential}""#);
        assert_eq!(server.wait_metric(NAME, &labels, 1.0), 1.0, "{credential}");
    }
    let (_, metrics) = server.http_get("/metrics");
    assert!(!metrics.contains(&account_key), "no key in the metrics");
}

fn mint(server: &Server, tid: &str, api_key: &str, client_id: &str) -> Value {
    let body = json!({
        "client_id": client_id,
        "pub": ["sensors/${client_id}/#"],
        "sub": ["commands/${client_id}"],
        "ttl_seconds": 600,
    });
    server
        .api(
            "POST",
            &format!("/v1/tenants/{tid}/tokens"),
            Some(api_key),
            Some(&body),
        )
        .expect(201)
}

/// `aerie keys rotate` against the server's database; returns the new kid.
fn rotate_keys(server: &Server, database: &[&str]) -> String {
    let out = Command::new(aerie_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&server.data_dir)
        .args(database)
        .env_remove("AERIE_DATABASE_URL")
        .env_remove("AERIE_SECRET_KEY")
        .env_remove("AERIE_SECRET_KEY_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .trim()
        .strip_prefix("new signing key: ")
        .expect("the new kid")
        .to_owned()
}

fn kid_of(token: &Value) -> String {
    let token = token.as_str().unwrap();
    let header = aerie_testdb::jsonwebtoken::decode_header(token).unwrap();
    header.kid.unwrap()
}

/// A key limited to `clients` is refused minting and wider keys over real
/// HTTP, and each refusal is counted by scope (never by key or tenant).
#[test]
fn scope_refusals_are_403_and_counted_by_scope() {
    let server = Server::start(&[]);
    let t = aerie_e2e::tenants::tenant(&server, "scopes@example.com");
    let keys = format!("/v1/tenants/{}/api-keys", t.id);
    let narrow = server
        .api(
            "POST",
            &keys,
            Some(&t.session),
            Some(&json!({"name": "ops", "scopes": ["clients"]})),
        )
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let minted = server.api(
        "POST",
        &format!("/v1/tenants/{}/tokens", t.id),
        Some(&narrow),
        Some(&json!({})),
    );
    assert_eq!(
        minted.expect(403)["detail"],
        "this API key lacks the `tokens` scope"
    );
    server
        .api(
            "POST",
            &keys,
            Some(&narrow),
            Some(&json!({"name": "wider"})),
        )
        .expect(403);
    assert_eq!(
        server.wait_metric(
            "aerie_control_scope_refused_total",
            r#"scope="tokens""#,
            1.0
        ),
        1.0
    );
    assert_eq!(
        server.wait_metric("aerie_control_scope_refused_total", r#"scope="keys""#, 1.0),
        1.0
    );
    let (_, metrics) = server.http_get("/metrics");
    assert!(!metrics.contains(&t.id), "no tenant id as a label");
}
