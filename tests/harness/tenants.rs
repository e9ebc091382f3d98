//! Tenants through the real control plane: sign-up, a tenant, an API key,
//! tokens minted with it, and CONNECT packets carrying them.

use serde_json::{Value, json};

use crate::http::Api;
use crate::raw::connect_packet;
use aerie_proto::ProtocolVersion;

/// A tenant and an API key of it (sign-up → tenant → key).
pub struct Tenant {
    pub id: String,
    pub api_key: String,
    /// The owning account's session token.
    pub session: String,
}

pub fn tenant(server: &impl Api, email: &str) -> Tenant {
    let account = server
        .api(
            "POST",
            "/v1/accounts",
            None,
            Some(&json!({"email": email, "password": "correct horse battery"})),
        )
        .expect(201);
    let session = account["token"].as_str().unwrap();
    let t = server
        .api(
            "POST",
            "/v1/tenants",
            Some(session),
            Some(&json!({"name": "home"})),
        )
        .expect(201);
    let id = t["id"].as_str().unwrap().to_owned();
    let key = server
        .api(
            "POST",
            &format!("/v1/tenants/{id}/api-keys"),
            Some(session),
            Some(&json!({"name": "ci"})),
        )
        .expect(201);
    Tenant {
        id,
        api_key: key["key"].as_str().unwrap().to_owned(),
        session: session.to_owned(),
    }
}

/// Mints a token as `body` asks; returns (token, jti).
pub fn mint(server: &impl Api, tenant: &Tenant, body: Value) -> (String, String) {
    let minted = server
        .api(
            "POST",
            &format!("/v1/tenants/{}/tokens", tenant.id),
            Some(&tenant.api_key),
            Some(&body),
        )
        .expect(201);
    (
        minted["token"].as_str().unwrap().to_owned(),
        minted["jti"].as_str().unwrap().to_owned(),
    )
}

/// Revokes `tenant`'s token `jti` with the tenant's API key.
pub fn revoke(server: &impl Api, tenant: &Tenant, jti: &str) {
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/tokens/{jti}", tenant.id),
            Some(&tenant.api_key),
            None,
        )
        .expect(204);
}

/// Suspends `tenant` through the admin API (the harness's admin token,
/// [`crate::scaleout::ADMIN_TOKEN`], which the server must have been given).
pub fn suspend(server: &impl Api, tenant: &Tenant) {
    let path = format!("/v1/admin/tenants/{}/suspend", tenant.id);
    server
        .api("POST", &path, Some(crate::scaleout::ADMIN_TOKEN), None)
        .expect(200);
}

/// Publishes `payload` (text) to `topic` through the REST API with the
/// tenant's API key; returns the answer (`matched_subscriptions`).
pub fn publish_over_http(server: &impl Api, tenant: &Tenant, topic: &str, payload: &str) -> Value {
    server
        .api(
            "POST",
            &format!("/v1/tenants/{}/messages", tenant.id),
            Some(&tenant.api_key),
            Some(&json!({"topic": topic, "payload": payload})),
        )
        .expect(200)
}

/// A clean CONNECT with `password` (and a username, which is ignored).
pub fn with_password(
    version: ProtocolVersion,
    client_id: &str,
    password: Option<&str>,
) -> aerie_proto::Connect {
    let mut c = connect_packet(version, client_id, true);
    c.username = password.map(|_| "anyone".into());
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    c
}
