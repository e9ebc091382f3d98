//! REST API v1 through `app(state).oneshot(..)`, on a real SQLite file.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::api::{Api, ISSUER, Reply};
use support::endpoints;

use aerie_control::Config;
use aerie_control::api::admin::AdminToken;
use aerie_control::keys::Kek;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn sign_up_tenant_api_key_flow_then_revoke() {
    let api = Api::new().await;
    let (_, first_token) = api.sign_up("  Ada@Example.COM ").await;

    // Log in with the normalised email in another case.
    let r = api
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "ada@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert!(!first_token.is_empty());

    let t = api.create_tenant(&token, "Plant 1").await;
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(tid.len(), 10);
    assert_eq!(t["name"], "Plant 1");
    assert_eq!(t["plan"], "free");
    assert_eq!(t["status"], "active");
    assert_eq!(t["limits"]["connections"], 100);
    assert_eq!(t["endpoints"]["mqtt"], "mqtt://127.0.0.1:1883");
    assert_eq!(t["endpoints"]["wss"], "wss://127.0.0.1:8084/mqtt");
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));

    let list = api
        .call(Method::GET, "/v1/tenants", Some(&token), None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json, json!([t]));

    let path = format!("/v1/tenants/{tid}");
    let got = api.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(got.json, t);

    let renamed = api
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"name": "Plant 2"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.json["name"], "Plant 2");
    let got = api.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(got.json["name"], "Plant 2");

    // An API key, shown once, works for its tenant.
    let keys = format!("{path}/api-keys");
    let created = api
        .call(
            Method::POST,
            &keys,
            Some(&token),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let key = created.json["key"].as_str().unwrap().to_owned();
    let key_id = created.json["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("aerie_"));
    let listed = api.call(Method::GET, &keys, Some(&token), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    assert_eq!(listed.json[0]["id"], key_id.as_str());
    assert!(
        listed.json[0].get("key").is_none(),
        "the secret is shown once"
    );

    let with_key = api.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(with_key.status, StatusCode::OK);
    assert_eq!(with_key.json["name"], "Plant 2");
    let list_with_key = api.call(Method::GET, "/v1/tenants", Some(&key), None).await;
    assert_eq!(list_with_key.json.as_array().unwrap().len(), 1);

    // The key sees no other tenant, not even one of the same account.
    let other = api.create_tenant(&token, "Plant 3").await;
    let other_path = format!("/v1/tenants/{}", other["id"].as_str().unwrap());
    api.call(Method::GET, &other_path, Some(&key), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(
        Method::POST,
        &format!("{other_path}/api-keys"),
        Some(&key),
        Some(json!({"name": "sneaky"})),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    api.call(
        Method::POST,
        "/v1/tenants",
        Some(&key),
        Some(json!({"name": "mine"})),
    )
    .await
    .problem(StatusCode::FORBIDDEN);

    // Revoke: the key stops working at once.
    let revoked = api
        .call(
            Method::DELETE,
            &format!("{keys}/{key_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let detail = api
        .call(Method::GET, &path, Some(&key), None)
        .await
        .problem(StatusCode::UNAUTHORIZED)
        .to_owned();
    assert!(detail.contains("API key"), "{detail}");
    api.call(
        Method::DELETE,
        &format!("{keys}/{key_id}"),
        Some(&token),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // Delete the tenant.
    let deleted = api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    api.call(Method::GET, &path, Some(&token), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn log_in_with_wrong_password_or_unknown_email_gets_the_same_401() {
    let api = Api::new().await;
    api.sign_up("ada@example.com").await;
    let wrong = api
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "ada@example.com", "password": "not the password"})),
        )
        .await;
    let unknown = api
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "bob@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(
        wrong.problem(StatusCode::UNAUTHORIZED),
        unknown.problem(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong.json, unknown.json);
}

#[tokio::test]
async fn sign_up_refuses_bad_email_short_password_and_taken_email() {
    let api = Api::new().await;
    for (email, password) in [
        ("not-an-email", "long enough password"),
        ("a@b", "long enough password"),
        ("ada@example.com", "short"),
        ("ada@example.com", "123456789"),
    ] {
        api.call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
        .problem(StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        api.state
            .store()
            .account_by_email("ada@example.com")
            .await
            .unwrap(),
        None
    );
    api.sign_up("ada@example.com").await;
    api.call(
        Method::POST,
        "/v1/accounts",
        None,
        Some(json!({"email": "ADA@example.com", "password": "another long one"})),
    )
    .await
    .problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn bad_bodies_are_problems_and_store_nothing() {
    let api = Api::new().await;
    let (account, token) = api.sign_up("ada@example.com").await;
    let post = |ct: Option<&'static str>, body: String| {
        let (api, token) = (&api, token.clone());
        async move {
            api.raw(Method::POST, "/v1/tenants", Some(&token), ct, body)
                .await
        }
    };
    let json = Some("application/json");
    let malformed = post(json, r#"{"name": "x""#.into()).await;
    malformed.problem(StatusCode::BAD_REQUEST);
    let wrong_type = post(json, r#"{"name": 5}"#.into()).await;
    wrong_type.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = post(json, r#"{"name": "x", "plan": "enterprise"}"#.into()).await;
    let detail = unknown_field.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("unknown field"), "{detail}");
    let missing_field = post(json, "{}".into()).await;
    missing_field.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let no_content_type = post(None, r#"{"name": "x"}"#.into()).await;
    no_content_type.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!(
        r#"{{"name": "{}"}}"#,
        "x".repeat(aerie_control::MAX_BODY_BYTES)
    );
    post(json, huge)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE);
    let long_name = format!(r#"{{"name": "{}"}}"#, "x".repeat(101));
    post(json, long_name).await.problem(StatusCode::BAD_REQUEST);
    post(json, r#"{"name": "  "}"#.into())
        .await
        .problem(StatusCode::BAD_REQUEST);
    post(json, r#"{"name": "a\u0000b"}"#.into())
        .await
        .problem(StatusCode::BAD_REQUEST);
    assert_eq!(api.tenant_count(account).await, 0);

    // The same on sign-up: nothing stored.
    api.raw(
        Method::POST,
        "/v1/accounts",
        None,
        json,
        r#"{"email": "bob@example.com", "password": "long enough password", "admin": true}"#,
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.state
            .store()
            .account_by_email("bob@example.com")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn missing_malformed_or_expired_credentials_get_401() {
    let api = Api::new().await;
    let (account, _) = api.sign_up("ada@example.com").await;
    let none = api.call(Method::GET, "/v1/tenants", None, None).await;
    none.problem(StatusCode::UNAUTHORIZED);
    for token in ["garbage", "s2.e30.AAAA", "aerie_notakeyatall"] {
        api.call(Method::GET, "/v1/tenants", Some(token), None)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }

    // A token issued two hours ago has expired (sessions last one hour).
    let issued = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let expired = aerie_control::session::start(&api.state, account, issued)
        .await
        .unwrap()
        .token;
    let r = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&expired),
            Some(json!({"name": "x"})),
        )
        .await;
    assert!(r.problem(StatusCode::UNAUTHORIZED).contains("expired"));
    assert_eq!(api.tenant_count(account).await, 0);
    // ... while one issued 59 minutes ago still works.
    let fresh = aerie_control::session::start(
        &api.state,
        account,
        time::OffsetDateTime::now_utc() - time::Duration::minutes(59),
    )
    .await
    .unwrap()
    .token;
    let r = api
        .call(Method::GET, "/v1/tenants", Some(&fresh), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn sql_metacharacters_in_a_tenant_name_are_stored_verbatim() {
    let api = Api::new().await;
    let (account, token) = api.sign_up("ada@example.com").await;
    let name = r#"Robert'); DROP TABLE tenants;-- "x" % _ \ ünï"#;
    let t = api.create_tenant(&token, name).await;
    assert_eq!(t["name"], name);
    let got = api
        .call(
            Method::GET,
            &format!("/v1/tenants/{}", t["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(got.json["name"], name);
    assert_eq!(api.tenant_count(account).await, 1);
    api.call(
        Method::GET,
        "/v1/tenants/'%20OR%20'1'='1",
        Some(&token),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_accounts_tenant_is_404_and_stays_unchanged() {
    let api = Api::new().await;
    let (_, ada) = api.sign_up("ada@example.com").await;
    let (_, bob) = api.sign_up("bob@example.com").await;
    let t = api.create_tenant(&ada, "Ada's").await;
    let path = format!("/v1/tenants/{}", t["id"].as_str().unwrap());
    let keys = format!("{path}/api-keys");

    let not_found = api.call(Method::GET, &path, Some(&bob), None).await;
    let never_existed = api
        .call(Method::GET, "/v1/tenants/zzzzzzzzzz", Some(&bob), None)
        .await;
    assert_eq!(
        not_found.problem(StatusCode::NOT_FOUND),
        never_existed.problem(StatusCode::NOT_FOUND)
    );
    api.call(
        Method::PATCH,
        &path,
        Some(&bob),
        Some(json!({"name": "mine"})),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    api.call(Method::DELETE, &path, Some(&bob), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::POST, &keys, Some(&bob), Some(json!({"name": "k"})))
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &keys, Some(&bob), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let bobs_list = api.call(Method::GET, "/v1/tenants", Some(&bob), None).await;
    assert_eq!(bobs_list.json, json!([]));

    let still = api.call(Method::GET, &path, Some(&ada), None).await;
    assert_eq!(still.json, t);
    let ada_keys = api.call(Method::GET, &keys, Some(&ada), None).await;
    assert_eq!(ada_keys.json, json!([]));
}

#[tokio::test]
async fn deleting_a_tenant_disables_its_api_keys() {
    let api = Api::new().await;
    let (_, token) = api.sign_up("ada@example.com").await;
    let t = api.create_tenant(&token, "short-lived").await;
    let path = format!("/v1/tenants/{}", t["id"].as_str().unwrap());
    let key = api
        .call(
            Method::POST,
            &format!("{path}/api-keys"),
            Some(&token),
            Some(json!({"name": "k"})),
        )
        .await
        .json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    api.call(Method::DELETE, &path, Some(&key), None)
        .await
        .problem(StatusCode::FORBIDDEN);
    let r = api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    api.call(Method::GET, &path, Some(&key), None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let api = Api::new().await;
    let h = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((h.status, h.json), (StatusCode::OK, json!("ok\n")));
    let r = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    api.call(Method::GET, "/v1/nope", None, None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::PUT, "/v1/tenants", None, None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
}

// ---- device and browser tokens ----

impl Api {
    /// An account, its tenant and an API key of it: (session, tenant id, API key, key id).
    async fn tenant_with_api_key(&self, email: &str) -> (String, String, String, String) {
        let (_, session) = self.sign_up(email).await;
        let tid = self.create_tenant(&session, "Plant").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tid}/api-keys"),
                Some(&session),
                Some(json!({"name": "ci"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        (
            session,
            tid,
            r.json["key"].as_str().unwrap().to_owned(),
            r.json["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn mint(&self, tid: &str, credential: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/tenants/{tid}/tokens"),
            Some(credential),
            Some(body),
        )
        .await
    }

    async fn jwks(&self) -> Value {
        let r = self
            .call(Method::GET, "/.well-known/jwks.json", None, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.content_type, "application/json");
        r.json
    }
}

#[tokio::test]
async fn token_minted_with_an_api_key_verifies_against_the_jwks_with_exact_claims() {
    let api = Api::new().await;
    let (session, tid, key, key_id) = api.tenant_with_api_key("tok@example.com").await;

    let r = api
        .mint(
            &tid,
            &key,
            json!({"client_id": "dev-1", "pub": ["sensors/${client_id}/#"],
                   "sub": ["cmd/${sub}/+", "broadcast/#"], "ttl_seconds": 600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let token = r.json["token"].as_str().unwrap();
    let jti = r.json["jti"].as_str().unwrap();
    let expires_at = time::OffsetDateTime::parse(
        r.json["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    let jwks = api.jwks().await;
    let only = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(only["kty"], "OKP");
    assert_eq!(only["crv"], "Ed25519");
    assert_eq!(only["alg"], "EdDSA");
    assert_eq!(only["use"], "sig");
    assert!(only.get("d").is_none(), "no private part in the JWKS");

    let claims = support::verify_jwt(token, &jwks, ISSUER).expect("verifies");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 600);
    assert_eq!(claims["exp"].as_i64().unwrap(), expires_at.unix_timestamp());
    assert!((iat - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 30);
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER, "aud": "mqtt", "sub": "dev-1", "tnt": tid,
            "iat": iat, "exp": iat + 600, "jti": jti, "client_id": "dev-1",
            "acl": {"pub": ["sensors/${client_id}/#"], "sub": ["cmd/${sub}/+", "broadcast/#"]},
        })
    );
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(
        header.kid.as_ref(),
        only["kid"].as_str().map(str::to_owned).as_ref()
    );

    // No client id, no filters: sub is the principal, no acl, default TTL one hour.
    let r = api.mint(&tid, &key, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let claims = support::verify_jwt(r.json["token"].as_str().unwrap(), &jwks, ISSUER).unwrap();
    assert_eq!(claims["sub"], format!("api-key:{key_id}"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(claims.get("acl").is_none() && claims.get("client_id").is_none());

    // With the session token: sub is the account; only `pub` given → acl with empty `sub`.
    let r = api.mint(&tid, &session, json!({"pub": ["a/b"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let claims = support::verify_jwt(r.json["token"].as_str().unwrap(), &jwks, ISSUER).unwrap();
    assert!(claims["sub"].as_str().unwrap().starts_with("account:"));
    assert_eq!(claims["acl"], json!({"pub": ["a/b"], "sub": []}));
    assert_ne!(claims["jti"], jti, "every token has its own jti");

    // A wrong issuer or audience does not verify.
    assert!(support::verify_jwt(token, &jwks, "http://elsewhere").is_err());
}

#[tokio::test]
async fn token_ttl_out_of_bounds_and_bad_filters_are_422() {
    let api = Api::new().await;
    let (_, tid, key, _) = api.tenant_with_api_key("bounds@example.com").await;
    for ttl in [0, 59, -5, 30 * 86_400 + 1, i64::MAX] {
        let r = api.mint(&tid, &key, json!({"ttl_seconds": ttl})).await;
        assert!(
            r.problem(StatusCode::UNPROCESSABLE_ENTITY)
                .contains("ttl_seconds")
        );
    }
    for ttl in [60, 30 * 86_400] {
        let r = api.mint(&tid, &key, json!({"ttl_seconds": ttl})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{ttl}: {}", r.json);
    }
    for (field, filter) in [
        ("pub", "a/#/b"),
        ("sub", "a+/b"),
        ("sub", ""),
        ("pub", "a/${tenant}/b"),
        ("sub", "x\u{0}y"),
    ] {
        let r = api.mint(&tid, &key, json!({ field: [filter] })).await;
        let detail = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains(field), "{detail}");
    }
    let r = api.mint(&tid, &key, json!({"client_id": ""})).await;
    r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let r = api.mint(&tid, &key, json!({"ttl": 60})).await;
    assert_eq!(r.status.as_u16() / 100, 4, "unknown fields are refused");
    let r = api.mint(&tid, &key, json!({"pub": "a/b"})).await;
    assert_eq!(r.status.as_u16() / 100, 4, "pub must be a list");
}

#[tokio::test]
async fn another_accounts_tenant_cannot_mint_or_revoke_and_no_credentials_is_401() {
    let api = Api::new().await;
    let (_, tid, key, _) = api.tenant_with_api_key("mine@example.com").await;
    let (other_session, other_tid, other_key, _) =
        api.tenant_with_api_key("theirs@example.com").await;
    let r = api.mint(&tid, &key, json!({})).await;
    let jti = r.json["jti"].as_str().unwrap().to_owned();

    api.mint(&tid, &other_session, json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    api.mint(&tid, &other_key, json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    api.mint(&other_tid, &key, json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    api.mint("nosuchtnt0", &key, json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    let r = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/tokens"),
            None,
            Some(json!({})),
        )
        .await;
    r.problem(StatusCode::UNAUTHORIZED);
    // Revoking through the other tenant's path or credentials: 404, and the token stays valid.
    for (path_tid, cred) in [(&tid, &other_key), (&other_tid, &other_key)] {
        let r = api
            .call(
                Method::DELETE,
                &format!("/v1/tenants/{path_tid}/tokens/{jti}"),
                Some(cred),
                None,
            )
            .await;
        r.problem(StatusCode::NOT_FOUND);
    }
    assert_eq!(
        api.state.store().revoked_token(&tid, &jti).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn revoking_a_token_is_204_then_404_and_is_recorded() {
    let api = Api::new().await;
    let (_, tid, key, _) = api.tenant_with_api_key("revoke@example.com").await;
    let r = api.mint(&tid, &key, json!({"ttl_seconds": 120})).await;
    let jti = r.json["jti"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenants/{tid}/tokens/{jti}");
    let r = api.call(Method::DELETE, &path, Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let revoked = api
        .state
        .store()
        .revoked_token(&tid, &jti)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.tenant_id, tid);
    let again = api.call(Method::DELETE, &path, Some(&key), None).await;
    assert!(again.problem(StatusCode::NOT_FOUND).contains("token"));
    let unknown = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/tokens/nosuchjti"),
            Some(&key),
            None,
        )
        .await;
    unknown.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_token_is_read_by_jti_in_its_tenant_only_and_shows_its_revocation() {
    let api = Api::new().await;
    let (session, tid, key, _) = api.tenant_with_api_key("onetoken@example.com").await;
    let (_, other_tid, other_key, _) = api.tenant_with_api_key("notmine@example.com").await;
    let minted = api
        .mint(
            &tid,
            &key,
            json!({"client_id": "dev-7", "ttl_seconds": 120}),
        )
        .await;
    let jti = minted.json["jti"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenants/{tid}/tokens/{jti}");
    for credential in [&session, &key] {
        let r = api.call(Method::GET, &path, Some(credential), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["jti"], jti.as_str());
        assert_eq!(r.json["subject"], "dev-7");
        assert_eq!(r.json["expires_at"], minted.json["expires_at"]);
        assert_eq!(r.json["revoked"], false);
        assert!(r.json.get("token").is_none(), "{}", r.json);
    }
    // Another tenant's key does not see it, through either tenant.
    let theirs = format!("/v1/tenants/{other_tid}/tokens/{jti}");
    api.call(Method::GET, &theirs, Some(&other_key), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &path, Some(&other_key), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let unknown = format!("/v1/tenants/{tid}/tokens/nosuchjti");
    api.call(Method::GET, &unknown, Some(&key), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    // A jti no token could have is refused as revoking it is.
    let long = format!("/v1/tenants/{tid}/tokens/{}", "j".repeat(257));
    api.call(Method::GET, &long, Some(&key), None)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // Revoked: still there, marked.
    let r = api.call(Method::DELETE, &path, Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(r.json["revoked"], true, "{}", r.json);
}

#[tokio::test]
async fn tokens_are_listed_newest_first_with_revocations_and_never_the_token() {
    let api = Api::new().await;
    let (session, tid, key, _) = api.tenant_with_api_key("list@example.com").await;
    let (other_session, other_tid, other_key, _) =
        api.tenant_with_api_key("others@example.com").await;
    let first = api.mint(&tid, &key, json!({"client_id": "dev-1"})).await;
    let second = api.mint(&tid, &session, json!({"ttl_seconds": 120})).await;
    let theirs = api.mint(&other_tid, &other_key, json!({})).await;
    let (first_jti, second_jti) = (
        first.json["jti"].as_str().unwrap(),
        second.json["jti"].as_str().unwrap(),
    );
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/tokens/{first_jti}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let path = format!("/v1/tenants/{tid}/tokens");
    // The account session and the tenant's API key see the same list.
    for credential in [&session, &key] {
        let r = api.call(Method::GET, &path, Some(credential), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.content_type, "application/json");
        let list = r.json.as_array().unwrap();
        assert_eq!(list.len(), 2, "{}", r.json);
        let by_jti = |jti: &str| {
            list.iter()
                .find(|t| t["jti"] == jti)
                .unwrap_or_else(|| panic!("{jti} not listed: {}", r.json))
        };
        let (one, two) = (by_jti(first_jti), by_jti(second_jti));
        assert_eq!(one["revoked"], true);
        assert_eq!(one["subject"], "dev-1");
        assert_eq!(one["expires_at"], first.json["expires_at"]);
        assert_eq!(two["revoked"], false);
        assert!(two["subject"].as_str().unwrap().starts_with("account:"));
        assert_eq!(two["expires_at"], second.json["expires_at"]);
        // Newest first (same second: then by jti, descending).
        let at = |t: &Value| {
            time::OffsetDateTime::parse(
                t["issued_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        assert!((at(&list[0]), list[0]["jti"].as_str()) > (at(&list[1]), list[1]["jti"].as_str()));
        assert!(
            !r.json
                .to_string()
                .contains(theirs.json["jti"].as_str().unwrap()),
            "another tenant's token is listed"
        );
        for t in list {
            assert_eq!(
                t.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["expires_at", "issued_at", "jti", "revoked", "subject"],
                "the token itself is never shown"
            );
        }
    }
    // Another account's tenant, another tenant's key, no tenant: 404; no credentials: 401.
    for (path_tid, cred) in [
        (&tid, &other_session),
        (&tid, &other_key),
        (&other_tid, &key),
    ] {
        api.call(
            Method::GET,
            &format!("/v1/tenants/{path_tid}/tokens"),
            Some(cred),
            None,
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    }
    api.call(
        Method::GET,
        "/v1/tenants/nosuchtnt0/tokens",
        Some(&key),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &path, None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwks_keeps_the_retired_key_after_rotation() {
    let api = Api::new().await;
    let (_, tid, key, _) = api.tenant_with_api_key("rotate@example.com").await;
    let before = api.mint(&tid, &key, json!({})).await.json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_kid =
        aerie_control::keys::rotate_signing_key(api.state.store(), api.state.secret_key())
            .await
            .unwrap();
    let after = api.mint(&tid, &key, json!({})).await.json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = api.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    support::verify_jwt(&before, &jwks, ISSUER).expect("the old token still verifies");
    support::verify_jwt(&after, &jwks, ISSUER).expect("the new token verifies");
    let header = jsonwebtoken::decode_header(&after).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
}

#[test]
fn secret_key_file_is_generated_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.key");
    let kek = Kek::load_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let again = Kek::load_or_create(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "not rewritten"
    );
    assert_eq!(format!("{kek:?}"), "Kek(..)", "never printed");
    // The same key: what one sealed, the other opens.
    let sealed =
        aerie_control::keys::generate_signing_key(&kek, aerie_control::store::now()).unwrap();
    aerie_control::keys::SigningKey::unseal(&sealed, &again).expect("same key");
    // An explicit key wins over the file; a bad one is an error.
    let hex = "11".repeat(32);
    let explicit = Kek::resolve(None, Some(&hex), Some(&path)).unwrap();
    assert!(aerie_control::keys::SigningKey::unseal(&sealed, &explicit).is_err());
    assert!(Kek::resolve(None, Some("short"), Some(&path)).is_err());
    assert!(Kek::resolve(None, None, None).is_err());
}

// ---- the broker-backed routes (clients, messages, retained) and usage ----

mod broker_double {
    use parking_lot::Mutex;

    use aerie_control::broker::{
        BrokerError, BrokerPort, ClientInfo, HttpPublish, PublishOutcome, RetainedMessage,
    };

    /// A `BrokerPort` that answers from fixtures and records every call: the
    /// tests check the HTTP contract in front of the port, not a broker.
    #[derive(Debug, Default)]
    pub struct RecordingBroker {
        pub clients: Mutex<Vec<(String, ClientInfo)>>,
        pub retained: Vec<(String, RetainedMessage)>,
        pub calls: Mutex<Vec<String>>,
        pub published: Mutex<Vec<(String, HttpPublish)>>,
    }

    impl RecordingBroker {
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().clone()
        }

        fn record(&self, call: String) {
            self.calls.lock().push(call);
        }
    }

    #[async_trait::async_trait]
    impl BrokerPort for RecordingBroker {
        async fn clients(&self, tenant_id: &str) -> Result<Vec<ClientInfo>, BrokerError> {
            self.record(format!("clients {tenant_id}"));
            let clients = self.clients.lock();
            Ok(clients
                .iter()
                .filter(|(t, _)| t == tenant_id)
                .map(|(_, c)| c.clone())
                .collect())
        }

        async fn disconnect(&self, tenant_id: &str, client_id: &str) -> Result<bool, BrokerError> {
            self.record(format!("disconnect {tenant_id} {client_id}"));
            let mut clients = self.clients.lock();
            let before = clients.len();
            clients.retain(|(t, c)| !(t == tenant_id && c.client_id == client_id));
            Ok(clients.len() < before)
        }

        async fn publish(
            &self,
            tenant_id: &str,
            message: HttpPublish,
        ) -> Result<PublishOutcome, BrokerError> {
            self.record(format!("publish {tenant_id} {}", message.topic));
            if message.topic == "over/quota" {
                return Err(BrokerError::Refused("tenant publish rate exceeded".into()));
            }
            self.published.lock().push((tenant_id.to_owned(), message));
            Ok(PublishOutcome {
                matched_subscriptions: 3,
            })
        }

        async fn retained(
            &self,
            tenant_id: &str,
            filter: &str,
        ) -> Result<Vec<RetainedMessage>, BrokerError> {
            self.record(format!("retained {tenant_id} {filter}"));
            Ok(self
                .retained
                .iter()
                .filter(|(t, m)| t == tenant_id && aerie_proto::topic::matches(filter, &m.topic))
                .map(|(_, m)| m.clone())
                .collect())
        }
    }
}

use std::sync::Arc;

use aerie_control::broker::{ClientInfo, HttpPublish, MqttProtocol, RetainedMessage, Transport};
use aerie_control::store::UsageRow;
use broker_double::RecordingBroker;

const NO_BROKER: &str = "no broker is attached to this control plane";

fn client(id: &str, protocol: MqttProtocol, transport: Transport, subs: &[&str]) -> ClientInfo {
    ClientInfo {
        client_id: id.to_owned(),
        protocol,
        transport,
        connected_at: time::OffsetDateTime::parse(
            "2026-11-28T09:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap(),
        subscriptions: subs.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn broker_routes_answer_503_without_a_broker_after_auth_and_tenant_checks() {
    let api = Api::new().await;
    let (session, tid, key, _) = api.tenant_with_api_key("ada@example.com").await;
    let (_, bob) = api.sign_up("bob@example.com").await;
    let base = format!("/v1/tenants/{tid}");
    let publish = json!({"topic": "a/b", "payload": "hi"});
    let routes: [(Method, String, Option<Value>); 4] = [
        (Method::GET, format!("{base}/clients"), None),
        (Method::DELETE, format!("{base}/clients/dev-1"), None),
        (Method::POST, format!("{base}/messages"), Some(publish)),
        (Method::GET, format!("{base}/retained?filter=%23"), None),
    ];
    for (method, path, body) in routes {
        for credential in [&session, &key] {
            let r = api
                .call(method.clone(), &path, Some(credential), body.clone())
                .await;
            assert_eq!(
                r.problem(StatusCode::SERVICE_UNAVAILABLE),
                NO_BROKER,
                "{method} {path}"
            );
            assert_eq!(r.json["type"], "urn:aerie:problem:unavailable");
        }
        api.call(method.clone(), &path, None, body.clone())
            .await
            .problem(StatusCode::UNAUTHORIZED);
        api.call(method.clone(), &path, Some(&bob), body.clone())
            .await
            .problem(StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn clients_are_listed_by_id_and_disconnected_in_the_callers_tenant_only() {
    let api = Api::new().await;
    let (session, tid, key, _) = api.tenant_with_api_key("ada@example.com").await;
    let (_, bob) = api.sign_up("bob@example.com").await;
    let broker = Arc::new(RecordingBroker::default());
    broker.clients.lock().extend([
        (
            tid.clone(),
            client("zeta", MqttProtocol::V311, Transport::Wss, &[]),
        ),
        (
            tid.clone(),
            client(
                "dev/1",
                MqttProtocol::V5,
                Transport::Tls,
                &["cmd/dev/1/#", "$share/g/t"],
            ),
        ),
        (
            "othertenant".to_owned(),
            client("theirs", MqttProtocol::V5, Transport::Tcp, &[]),
        ),
    ]);
    let api = api.with_broker(broker.clone());
    let clients = format!("/v1/tenants/{tid}/clients");

    let r = api.call(Method::GET, &clients, Some(&key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.json,
        json!([
            {"client_id": "dev/1", "protocol": "5.0", "transport": "tls",
             "connected_at": "2026-11-28T09:00:00Z", "subscriptions": ["cmd/dev/1/#", "$share/g/t"]},
            {"client_id": "zeta", "protocol": "3.1.1", "transport": "wss",
             "connected_at": "2026-11-28T09:00:00Z", "subscriptions": []},
        ])
    );

    // Another account sees 404 and the broker is never asked.
    let calls_before = broker.calls();
    api.call(Method::GET, &clients, Some(&bob), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::DELETE, &format!("{clients}/zeta"), Some(&bob), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(broker.calls(), calls_before);

    // A client id with a slash, percent-encoded in the path.
    let r = api
        .call(
            Method::DELETE,
            &format!("{clients}/dev%2F1"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    assert_eq!(
        broker.calls().last().unwrap(),
        &format!("disconnect {tid} dev/1")
    );
    let again = api
        .call(
            Method::DELETE,
            &format!("{clients}/dev%2F1"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(again.problem(StatusCode::NOT_FOUND), "client not found");
    let r = api.call(Method::GET, &clients, Some(&key), None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn publishing_checks_topic_payload_and_qos_before_the_broker_sees_it() {
    let api = Api::new().await;
    let (_, tid, key, _) = api.tenant_with_api_key("ada@example.com").await;
    let broker = Arc::new(RecordingBroker::default());
    let api = api.with_broker(broker.clone());
    let path = format!("/v1/tenants/{tid}/messages");

    let r = api
        .call(
            Method::POST,
            &path,
            Some(&key),
            Some(json!({"topic": "sensors/1", "payload": "21.5", "qos": 1, "retain": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({"matched_subscriptions": 3}));
    let r = api
        .call(
            Method::POST,
            &path,
            Some(&key),
            Some(json!({"topic": "raw", "payload_base64": "AAH/"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        *broker.published.lock(),
        [
            (
                tid.clone(),
                HttpPublish {
                    topic: "sensors/1".into(),
                    payload: b"21.5".to_vec(),
                    qos: 1,
                    retain: true
                }
            ),
            (
                tid.clone(),
                HttpPublish {
                    topic: "raw".into(),
                    payload: vec![0, 1, 255],
                    qos: 0,
                    retain: false
                }
            ),
        ]
    );

    let calls_before = broker.calls();
    let big = "x".repeat(32 * 1024 + 1);
    let refused = [
        (
            json!({"topic": "a", "payload": "x", "payload_base64": "eA=="}),
            "exactly one of",
        ),
        (json!({"topic": "a"}), "exactly one of"),
        (
            json!({"topic": "a", "payload_base64": "not base64!"}),
            "not valid base64",
        ),
        (json!({"topic": "a/+", "payload": "x"}), "wildcard"),
        (json!({"topic": "", "payload": "x"}), "empty"),
        (json!({"topic": "$SYS/x", "payload": "x"}), "broker's own"),
        (
            json!({"topic": "a", "payload": "x", "qos": 2}),
            "qos must be 0 or 1",
        ),
        (json!({"topic": "a", "payload": big}), "at most 32768"),
    ];
    for (body, detail) in refused {
        let r = api
            .call(Method::POST, &path, Some(&key), Some(body.clone()))
            .await;
        let got = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(got.contains(detail), "{body}: {got}");
    }
    api.call(
        Method::POST,
        &path,
        Some(&key),
        Some(json!({"topic": "a", "payload": "x", "extra": 1})),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        broker.calls(),
        calls_before,
        "nothing invalid reached the broker"
    );

    // The broker's refusal is a 422 with its reason.
    let r = api
        .call(
            Method::POST,
            &path,
            Some(&key),
            Some(json!({"topic": "over/quota", "payload": "x"})),
        )
        .await;
    assert_eq!(
        r.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "tenant publish rate exceeded"
    );
}

#[tokio::test]
async fn retained_messages_match_the_filter_and_show_base64_and_text() {
    let api = Api::new().await;
    let (session, tid, _, _) = api.tenant_with_api_key("ada@example.com").await;
    let retained = |t: &str, topic: &str, payload: &[u8], qos| {
        (
            t.to_owned(),
            RetainedMessage {
                topic: topic.into(),
                payload: payload.to_vec(),
                qos,
            },
        )
    };
    let broker = Arc::new(RecordingBroker {
        retained: vec![
            retained(&tid, "sensors/2", &[0xff, 0], 0),
            retained(&tid, "sensors/1", b"21.5", 1),
            retained(&tid, "other", b"x", 0),
            retained("othertenant", "sensors/9", b"theirs", 0),
        ],
        ..RecordingBroker::default()
    });
    let api = api.with_broker(broker.clone());
    let path = format!("/v1/tenants/{tid}/retained");

    let r = api
        .call(
            Method::GET,
            &format!("{path}?filter=sensors%2F%23"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!([
            {"topic": "sensors/1", "qos": 1, "payload_base64": "MjEuNQ==", "payload": "21.5"},
            {"topic": "sensors/2", "qos": 0, "payload_base64": "/wA="},
        ])
    );
    assert_eq!(broker.calls(), [format!("retained {tid} sensors/#")]);

    let missing = api.call(Method::GET, &path, Some(&session), None).await;
    assert!(missing.problem(StatusCode::BAD_REQUEST).contains("filter"));
    for bad in ["a%2F%23%2Fb", "a%2Fb%2B", "", "%24share%2Fg%2Fx"] {
        api.call(
            Method::GET,
            &format!("{path}?filter={bad}"),
            Some(&session),
            None,
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(broker.calls().len(), 1);
}

#[tokio::test]
async fn usage_is_hourly_with_totals_and_the_range_is_checked() {
    let api = Api::new().await;
    let (session, tid, key, _) = api.tenant_with_api_key("ada@example.com").await;
    let (_, bob) = api.sign_up("bob@example.com").await;
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let row = |tenant: &str, hour, secs, n| UsageRow {
        tenant_id: tenant.to_owned(),
        hour,
        connection_seconds: secs,
        messages_in: n,
        messages_out: 2 * n,
        bytes_in: 10 * n,
        bytes_out: 20 * n,
    };
    let now = aerie_control::store::now();
    api.state
        .store()
        .add_usage(&[
            row(&tid, at("2026-11-01T10:00:00Z"), 90, 1),
            row(&tid, at("2026-11-01T12:00:00Z"), 3600, 4),
            row(&tid, at("2026-11-03T00:00:00Z"), 60, 100),
            row("othertenant", at("2026-11-01T10:00:00Z"), 60, 7),
            row(&tid, now - time::Duration::hours(2), 120, 5),
            row(&tid, now - time::Duration::hours(30), 120, 6),
        ])
        .await
        .unwrap();
    let usage = format!("/v1/tenants/{tid}/usage");

    // `from` is taken to the start of its hour; `to` is exclusive. No broker needed.
    let r = api
        .call(
            Method::GET,
            &format!("{usage}?from=2026-11-01T10:30:00Z&to=2026-11-02T00:00:00%2B00:00"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({
            "from": "2026-11-01T10:00:00Z",
            "to": "2026-11-02T00:00:00Z",
            "hours": [
                {"hour": "2026-11-01T10:00:00Z", "connection_minutes": 1.5,
                 "messages_in": 1, "messages_out": 2, "bytes_in": 10, "bytes_out": 20},
                {"hour": "2026-11-01T12:00:00Z", "connection_minutes": 60.0,
                 "messages_in": 4, "messages_out": 8, "bytes_in": 40, "bytes_out": 80},
            ],
            "totals": {"connection_minutes": 61.5, "messages_in": 5, "messages_out": 10,
                       "bytes_in": 50, "bytes_out": 100},
        })
    );

    // Default: the last 24 hours.
    let r = api.call(Method::GET, &usage, Some(&session), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hours"].as_array().unwrap().len(), 1, "{}", r.json);
    assert_eq!(r.json["totals"]["messages_in"], 5);

    for (query, detail) in [
        ("?from=yesterday", "`from` must be an RFC 3339 time"),
        ("?to=2026-11-01", "`to` must be an RFC 3339 time"),
        (
            "?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
            "`from` must be before `to`",
        ),
        (
            "?from=2026-10-01T00:00:00Z&to=2026-11-02T00:00:00Z",
            "the range may be at most 31 days",
        ),
    ] {
        let r = api
            .call(Method::GET, &format!("{usage}{query}"), Some(&key), None)
            .await;
        let got = r.problem(StatusCode::BAD_REQUEST);
        assert!(got.starts_with(detail), "{query}: {got}");
    }
    api.call(Method::GET, &usage, Some(&bob), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &usage, None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

// ---- Tenant JWT issuers ----

mod keys_for_issuers {
    use std::sync::OnceLock;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use serde_json::{Value, json};

    pub fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// One RSA-2048 key per test binary: generating is slow.
    pub fn rsa() -> &'static aws_lc_rs::rsa::KeyPair {
        static KEY: OnceLock<aws_lc_rs::rsa::KeyPair> = OnceLock::new();
        KEY.get_or_init(|| {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()
        })
    }

    pub fn rsa_jwk(kid: &str) -> Value {
        let public = rsa().public_key();
        json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64u(public.modulus().big_endian_without_leading_zero()),
            "e": b64u(public.exponent().big_endian_without_leading_zero()),
        })
    }

    fn p256() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
    }

    pub fn ec_jwk(kid: &str) -> Value {
        let point = p256().public_key().as_ref().to_vec();
        json!({
            "kty": "EC", "kid": kid, "alg": "ES256", "crv": "P-256",
            "x": b64u(&point[1..33]), "y": b64u(&point[33..65]),
        })
    }

    pub fn p521_jwk() -> Value {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        json!({
            "kty": "EC", "crv": "P-521",
            "x": b64u(&point[1..67]), "y": b64u(&point[67..133]),
        })
    }

    pub fn ed_jwk(kid: &str) -> Value {
        let key = Ed25519KeyPair::generate().unwrap();
        json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(key.public_key().as_ref())})
    }

    pub fn pem(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    pub fn rsa_pem() -> String {
        pem("PUBLIC KEY", rsa().public_key().as_der().unwrap().as_ref())
    }

    pub fn ec_pem() -> String {
        pem("PUBLIC KEY", p256().public_key().as_der().unwrap().as_ref())
    }

    pub fn ed_pem() -> String {
        let key = Ed25519KeyPair::generate().unwrap();
        pem("PUBLIC KEY", key.public_key().as_der().unwrap().as_ref())
    }

    pub fn ed_private_pem() -> String {
        let key = Ed25519KeyPair::generate().unwrap();
        pem("PRIVATE KEY", key.to_pkcs8().unwrap().as_ref())
    }

    /// A SubjectPublicKeyInfo of a 1024-bit RSA key, DER-encoded by hand
    /// (aws-lc-rs does not make keys that small).
    pub fn rsa_1024_pem() -> String {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            match content.len() {
                n if n < 0x80 => out.push(n as u8),
                n if n < 0x100 => out.extend([0x81, n as u8]),
                n => out.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            out.extend(content);
            out
        }
        let mut n = vec![0u8; 129]; // leading 0: positive INTEGER
        n[1] = 0xC3;
        n[128] = 0x01;
        for (i, b) in n.iter_mut().enumerate().skip(2).take(126) {
            *b = (i as u8).wrapping_mul(37) | 1;
        }
        let rsa_public_key = tlv(0x30, &[tlv(0x02, &n), tlv(0x02, &[1, 0, 1])].concat());
        let rsa_encryption = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        let algorithm = tlv(0x30, &rsa_encryption);
        let bits = tlv(0x03, &[&[0u8][..], &rsa_public_key].concat());
        pem("PUBLIC KEY", &tlv(0x30, &[algorithm, bits].concat()))
    }
}

use keys_for_issuers as ik;

impl Api {
    /// An account with one tenant: (session token, tenant id).
    async fn tenant_owner(&self, email: &str) -> (String, String) {
        let (_, token) = self.sign_up(email).await;
        let tenant = self.create_tenant(&token, "plant").await;
        (token, tenant["id"].as_str().unwrap().to_owned())
    }

    async fn register_issuer(&self, token: &str, tid: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/tenants/{tid}/issuers"),
            Some(token),
            Some(body),
        )
        .await
    }

    async fn issuers(&self, token: &str, tid: &str) -> Vec<Value> {
        let r = self
            .call(
                Method::GET,
                &format!("/v1/tenants/{tid}/issuers"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json.as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn issuer_with_a_jwks_is_registered_listed_and_deleted() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    let jwks = json!({"keys": [ik::rsa_jwk("r1"), ik::ec_jwk("e1"), ik::ed_jwk("o1")]});
    let r = api
        .register_issuer(
            &token,
            &tid,
            json!({"issuer": "https://auth.example.com/", "jwks": jwks}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["issuer"], "https://auth.example.com/");
    assert_eq!(r.json["kind"], "jwks");
    assert_eq!(r.json["key_ids"], json!(["r1", "e1", "o1"]));
    assert!(r.json.get("jwks_url").is_none(), "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_owned();
    Uuid::parse_str(&id).unwrap();
    time::OffsetDateTime::parse(
        r.json["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    assert_eq!(api.issuers(&token, &tid).await, vec![r.json.clone()]);
    let stored = api.state.store().all_issuers().await.unwrap();
    assert_eq!(stored.len(), 1);
    let kept: Value = serde_json::from_str(stored[0].jwks.as_deref().unwrap()).unwrap();
    assert_eq!(kept["keys"][0]["n"], jwks["keys"][0]["n"]);

    let path = format!("/v1/tenants/{tid}/issuers/{id}");
    let gone = api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    api.call(Method::DELETE, &path, Some(&token), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(
        Method::DELETE,
        &format!("/v1/tenants/{tid}/issuers/not-a-uuid"),
        Some(&token),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    assert!(api.issuers(&token, &tid).await.is_empty());
}

#[tokio::test]
async fn issuer_with_a_jwks_url_or_a_pem_key_is_registered() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    for (n, url) in [
        "https://auth.example.com/.well-known/jwks.json",
        "http://127.0.0.1:9000/jwks",
        "http://[::1]:9000/jwks",
        "http://localhost/jwks",
    ]
    .into_iter()
    .enumerate()
    {
        let r = api
            .register_issuer(
                &token,
                &tid,
                json!({"issuer": format!("url-{n}"), "jwks_url": url}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{url}: {}", r.json);
        assert_eq!(r.json["kind"], "jwks_url");
        assert_eq!(r.json["jwks_url"], url);
        assert_eq!(r.json["key_ids"], json!([]));
    }
    for (name, pem) in [
        ("rsa", ik::rsa_pem()),
        ("ec", ik::ec_pem()),
        ("ed", ik::ed_pem()),
    ] {
        let r = api
            .register_issuer(&token, &tid, json!({"issuer": name, "public_key_pem": pem}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.json);
        assert_eq!(r.json["kind"], "public_key");
        assert!(r.json.get("jwks_url").is_none());
    }
    let listed: Vec<String> = api
        .issuers(&token, &tid)
        .await
        .iter()
        .map(|i| i["issuer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        ["url-0", "url-1", "url-2", "url-3", "rsa", "ec", "ed"]
    );
}

#[tokio::test]
async fn bad_issuers_are_refused_with_a_precise_detail_and_nothing_is_stored() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    let jwks = |keys: Vec<Value>| json!({"issuer": "iss", "jwks": {"keys": keys}});
    let with = |mut key: Value, member: &str, value: Value| {
        key[member] = value;
        key
    };
    let mut not_on_curve = ik::ec_jwk("e");
    not_on_curve["y"] = json!(ik::b64u(&[7u8; 32]));
    let short_rsa = json!({"kty": "RSA", "n": ik::b64u(&[0xC5; 128]), "e": "AQAB"});
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"issuer": "iss"}),
            StatusCode::BAD_REQUEST,
            "exactly one of jwks_url, jwks and public_key_pem",
        ),
        (
            json!({"issuer": "iss", "jwks_url": "https://a.example/", "public_key_pem": ik::ed_pem()}),
            StatusCode::BAD_REQUEST,
            "exactly one of",
        ),
        (
            json!({"issuer": "", "jwks_url": "https://a.example/"}),
            StatusCode::BAD_REQUEST,
            "1 to 255 characters",
        ),
        (
            json!({"issuer": "x".repeat(256), "jwks_url": "https://a.example/"}),
            StatusCode::BAD_REQUEST,
            "1 to 255 characters",
        ),
        (
            json!({"issuer": "a\nb", "jwks_url": "https://a.example/"}),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            json!({"issuer": " iss", "jwks_url": "https://a.example/"}),
            StatusCode::BAD_REQUEST,
            "whitespace",
        ),
        (
            json!({"issuer": ISSUER, "jwks_url": "https://a.example/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the control plane's own",
        ),
        (
            json!({"issuer": "iss", "jwks_url": "http://auth.example.com/jwks"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "https (plain http only to a loopback host: 127.0.0.1, ::1 or localhost)",
        ),
        (
            json!({"issuer": "iss", "jwks_url": format!("https://a.example/{}", "p".repeat(2048))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 2048 bytes",
        ),
        (
            json!({"issuer": "iss", "jwks_url": "https://me:secret@a.example/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "credentials",
        ),
        (
            json!({"issuer": "iss", "jwks": {"kys": []}}),
            StatusCode::BAD_REQUEST,
            "JSON Web Key Set",
        ),
        (
            jwks(vec![]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least one key",
        ),
        (
            jwks(vec![ik::ed_jwk("o"); 21]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 20 keys",
        ),
        (
            jwks(vec![json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "symmetric (oct) key",
        ),
        (
            jwks(vec![
                ik::ed_jwk("o"),
                with(ik::rsa_jwk("r"), "d", json!("AQAB")),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "jwks key 1 has the private member \"d\": send only public keys",
        ),
        (
            jwks(vec![with(ik::ec_jwk("e"), "d", json!("AQAB"))]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "send only public keys",
        ),
        (
            jwks(vec![with(ik::rsa_jwk("r"), "alg", json!("HS256"))]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "alg \"HS256\" is not accepted",
        ),
        (
            jwks(vec![with(ik::rsa_jwk("r"), "alg", json!("none"))]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not accepted",
        ),
        (
            jwks(vec![with(ik::rsa_jwk("r"), "alg", json!("ES256"))]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "alg ES256 does not fit a RSA key",
        ),
        (
            jwks(vec![with(ik::rsa_jwk("r"), "use", json!("enc"))]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "use must be \"sig\"",
        ),
        (
            jwks(vec![short_rsa]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the RSA modulus has 1024 bits",
        ),
        (
            jwks(vec![json!({"kty": "RSA", "n": ik::b64u(&[0xC5; 256])})]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "jwks key 0 (kty \"RSA\") is not a complete public key",
        ),
        (
            jwks(vec![ik::p521_jwk()]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "P-256 or P-384",
        ),
        (
            jwks(vec![not_on_curve]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not on the curve",
        ),
        (
            jwks(vec![ik::ed_jwk("same"), ik::ec_jwk("same")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kid \"same\" twice",
        ),
        (
            json!({"issuer": "iss", "public_key_pem": ik::ed_private_pem()}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "private key: send only public keys",
        ),
        (
            json!({"issuer": "iss", "public_key_pem": ik::pem("CERTIFICATE", b"not really")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be a \"PUBLIC KEY\" PEM",
        ),
        (
            json!({"issuer": "iss", "public_key_pem": ik::pem("PUBLIC KEY", b"not a key")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not an RSA, EC P-256/P-384 or Ed25519 public key",
        ),
        (
            json!({"issuer": "iss", "public_key_pem": ik::rsa_1024_pem()}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "2048 to 8192 bits",
        ),
        (
            json!({"issuer": "iss", "public_key_pem": format!("{}{}", ik::ed_pem(), " ".repeat(16 * 1024))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 16384 bytes",
        ),
    ];
    for (body, status, detail) in cases {
        let r = api.register_issuer(&token, &tid, body.clone()).await;
        let got = r.problem(status);
        assert!(got.contains(detail), "{body}: {got:?} lacks {detail:?}");
    }
    assert!(api.state.store().all_issuers().await.unwrap().is_empty());
}

#[tokio::test]
async fn issuer_is_unique_per_tenant_and_a_tenant_has_at_most_ten() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    let (other_token, other_tid) = api.tenant_owner("bob@example.com").await;
    let body = |iss: &str| json!({"issuer": iss, "jwks_url": "https://a.example/jwks"});
    let first = api.register_issuer(&token, &tid, body("shared")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = api.register_issuer(&token, &tid, body("shared")).await;
    assert!(
        again
            .problem(StatusCode::CONFLICT)
            .contains("registered this issuer already")
    );
    let elsewhere = api
        .register_issuer(&other_token, &other_tid, body("shared"))
        .await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", elsewhere.json);

    for n in 1..10 {
        let r = api
            .register_issuer(&token, &tid, body(&format!("iss-{n}")))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let eleventh = api.register_issuer(&token, &tid, body("iss-10")).await;
    assert_eq!(
        eleventh.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "a tenant may register at most 10 issuers; delete one first"
    );
    assert_eq!(api.issuers(&token, &tid).await.len(), 10);
}

#[tokio::test]
async fn issuers_of_another_accounts_tenant_are_404_and_no_credentials_is_401() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    let (mallory, mallory_tid) = api.tenant_owner("mallory@example.com").await;
    let body = json!({"issuer": "iss", "jwks": {"keys": [ik::ed_jwk("o1")]}});
    let r = api.register_issuer(&token, &tid, body.clone()).await;
    let id = r.json["id"].as_str().unwrap().to_owned();

    let path = format!("/v1/tenants/{tid}/issuers");
    api.register_issuer(&mallory, &tid, body.clone())
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &path, Some(&mallory), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    api.call(
        Method::DELETE,
        &format!("{path}/{id}"),
        Some(&mallory),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // Her own tenant with Ada's issuer id: not hers either.
    api.call(
        Method::DELETE,
        &format!("/v1/tenants/{mallory_tid}/issuers/{id}"),
        Some(&mallory),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    api.call(Method::GET, &path, None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    api.call(Method::POST, &path, None, Some(body))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(api.issuers(&token, &tid).await.len(), 1);
}

#[tokio::test]
async fn a_tenant_api_key_can_register_an_issuer() {
    let api = Api::new().await;
    let (token, tid) = api.tenant_owner("ada@example.com").await;
    let key = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&token),
            Some(json!({"name": "ci"})),
        )
        .await;
    let key = key.json["key"].as_str().unwrap().to_owned();
    let r = api
        .register_issuer(
            &key,
            &tid,
            json!({"issuer": "iss", "public_key_pem": ik::ed_pem()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(api.issuers(&token, &tid).await.len(), 1);
}

// ---- admin routes ----

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-admin";

async fn admin_api() -> Api {
    let mut config = Config::new(endpoints(), ISSUER, Kek::generate());
    config.admin_token = Some(AdminToken::new(&format!("{ADMIN_TOKEN}\n")).unwrap());
    Api::with_config(config).await
}

/// An account with one tenant and an API key: (session token, tenant id, API key).
async fn tenant_with_key(api: &Api) -> (String, String, String) {
    let (_, token) = api.sign_up("op@example.com").await;
    let tenant = api.create_tenant(&token, "Plant").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let key = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&token),
            Some(json!({"name": "ci"})),
        )
        .await
        .json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, tid, key)
}

#[test]
fn admin_token_shorter_than_32_characters_is_refused() {
    let err = AdminToken::new(&"x".repeat(31)).unwrap_err();
    assert!(err.contains("at least 32 characters"), "{err}");
    assert!(AdminToken::new(&format!("  {}\n", "x".repeat(31))).is_err());
    assert!(AdminToken::new(&format!("{} {}", "x".repeat(20), "y".repeat(20))).is_err());
    let token = AdminToken::new(&"x".repeat(32)).unwrap();
    assert!(token.matches(&"x".repeat(32)));
    assert!(!token.matches(&"x".repeat(33)));
    assert!(!format!("{token:?}").contains("xxxx"));
}

#[tokio::test]
async fn admin_routes_need_the_admin_token_not_a_session_or_api_key() {
    let api = admin_api().await;
    let (session, tid, key) = tenant_with_key(&api).await;
    let limits = format!("/v1/admin/tenants/{tid}/limits");
    let body = || Some(json!({"connections": 5}));
    for token in [
        None,
        Some("wrong-admin-token-wrong-admin-token"),
        Some(session.as_str()),
        Some(key.as_str()),
        Some(&ADMIN_TOKEN[..31]),
    ] {
        let r = api.call(Method::PATCH, &limits, token, body()).await;
        r.problem(StatusCode::UNAUTHORIZED);
        let r = api
            .call(Method::GET, "/v1/admin/tenants", token, None)
            .await;
        r.problem(StatusCode::UNAUTHORIZED);
        let r = api
            .call(
                Method::POST,
                &format!("/v1/admin/tenants/{tid}/suspend"),
                token,
                None,
            )
            .await;
        r.problem(StatusCode::UNAUTHORIZED);
    }
    // Nothing changed.
    let t = api.state.store().tenant(&tid).await.unwrap().unwrap();
    assert_eq!(t.limits.connections, 100);
    assert_eq!(t.status, "active");
}

#[tokio::test]
async fn admin_routes_are_disabled_without_an_admin_token() {
    let api = Api::new().await;
    let (session, tid, _) = tenant_with_key(&api).await;
    let r = api
        .call(Method::GET, "/v1/admin/tenants", Some(ADMIN_TOKEN), None)
        .await;
    let detail = r.problem(StatusCode::NOT_FOUND);
    assert_eq!(
        detail,
        "admin routes are disabled; start with --admin-token-file"
    );
    let r = api
        .call(
            Method::PATCH,
            &format!("/v1/admin/tenants/{tid}/limits"),
            Some(&session),
            Some(json!({"connections": 5})),
        )
        .await;
    r.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_changes_some_limits_and_the_tenant_object_shows_them() {
    let api = admin_api().await;
    let (session, tid, key) = tenant_with_key(&api).await;
    let r = api
        .call(
            Method::PATCH,
            &format!("/v1/admin/tenants/{tid}/limits"),
            Some(ADMIN_TOKEN),
            Some(json!({"connections": 500, "max_packet_size": 16, "inflight": 65535})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["id"], tid.as_str());
    assert_eq!(r.json["limits"]["connections"], 500);
    assert_eq!(r.json["limits"]["max_packet_size"], 16);
    assert_eq!(r.json["limits"]["inflight"], 65535);
    assert_eq!(r.json["limits"]["publish_rate_msgs"], 100, "others kept");
    assert_eq!(r.json["endpoints"]["mqtt"], "mqtt://127.0.0.1:1883");
    for token in [&session, &key] {
        let got = api
            .call(
                Method::GET,
                &format!("/v1/tenants/{tid}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(got.json["limits"], r.json["limits"]);
    }
    let all = api
        .call(Method::GET, "/v1/admin/tenants", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json.as_array().unwrap().len(), 1);
    assert_eq!(all.json[0]["limits"]["connections"], 500);
    assert!(all.json[0]["account_id"].is_string());
}

#[tokio::test]
async fn admin_limits_out_of_range_or_unknown_are_refused_and_change_nothing() {
    let api = admin_api().await;
    let (_, tid, _) = tenant_with_key(&api).await;
    let path = format!("/v1/admin/tenants/{tid}/limits");
    for (body, want) in [
        (
            json!({"connections": 0}),
            "`connections` must be between 1 and 10000000",
        ),
        (json!({"connections": -1}), "`connections` must be between"),
        (
            json!({"max_packet_size": 15}),
            "`max_packet_size` must be between 16 and 268435455",
        ),
        (
            json!({"max_packet_size": 268_435_456}),
            "`max_packet_size` must be between",
        ),
        (
            json!({"inflight": 65536}),
            "`inflight` must be between 1 and 65535",
        ),
        (
            json!({"connections": 10, "retained_bytes": 0}),
            "`retained_bytes`",
        ),
        (
            json!({"connect_rate": 0}),
            "`connect_rate` must be between 1 and 1000000",
        ),
        (
            json!({"client_publish_rate_msgs": 0}),
            "`client_publish_rate_msgs` must be between",
        ),
        (
            json!({"client_publish_rate_bytes": 11_000_000_000u64}),
            "`client_publish_rate_bytes` must be between 1 and 10737418240",
        ),
    ] {
        let r = api
            .call(Method::PATCH, &path, Some(ADMIN_TOKEN), Some(body))
            .await;
        let detail = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains(want), "{detail}");
    }
    let r = api
        .call(
            Method::PATCH,
            &path,
            Some(ADMIN_TOKEN),
            Some(json!({"conections": 5})),
        )
        .await;
    let detail = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("unknown field `conections`"), "{detail}");
    let t = api.state.store().tenant(&tid).await.unwrap().unwrap();
    assert_eq!(t.limits, aerie_control::plan::Limits::FREE);

    let r = api
        .call(
            Method::PATCH,
            "/v1/admin/tenants/nosuchtenant/limits",
            Some(ADMIN_TOKEN),
            Some(json!({"connections": 5})),
        )
        .await;
    r.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_suspends_and_resumes_a_tenant() {
    let api = admin_api().await;
    let (session, tid, _) = tenant_with_key(&api).await;
    let r = api
        .call(
            Method::POST,
            &format!("/v1/admin/tenants/{tid}/suspend"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "suspended");
    let got = api
        .call(
            Method::GET,
            &format!("/v1/tenants/{tid}"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(got.json["status"], "suspended");
    let r = api
        .call(
            Method::POST,
            &format!("/v1/admin/tenants/{tid}/resume"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(r.json["status"], "active");
    api.call(
        Method::POST,
        "/v1/admin/tenants/nosuchtenant/suspend",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

// ---- API key scopes and lineage ----

impl Api {
    /// Creates an API key on `tid` with `credential`; `scopes` None leaves the field out.
    async fn create_key(
        &self,
        tid: &str,
        credential: &str,
        name: &str,
        scopes: Option<&[&str]>,
    ) -> Reply {
        let body = match scopes {
            Some(s) => json!({"name": name, "scopes": s}),
            None => json!({"name": name}),
        };
        self.call(
            Method::POST,
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(credential),
            Some(body),
        )
        .await
    }

    /// As `create_key`, asserting 201; returns (key, key id).
    async fn new_key(
        &self,
        tid: &str,
        credential: &str,
        name: &str,
        scopes: Option<&[&str]>,
    ) -> (String, String) {
        let r = self.create_key(tid, credential, name, scopes).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        (
            r.json["key"].as_str().unwrap().to_owned(),
            r.json["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn list_keys(&self, tid: &str, credential: &str) -> Vec<Value> {
        let path = format!("/v1/tenants/{tid}/api-keys");
        let r = self.call(Method::GET, &path, Some(credential), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json.as_array().unwrap().clone()
    }

    async fn works(&self, tid: &str, key: &str) -> bool {
        let r = self
            .call(Method::GET, &format!("/v1/tenants/{tid}"), Some(key), None)
            .await;
        r.status == StatusCode::OK
    }
}

#[tokio::test]
async fn an_api_key_created_by_a_key_dies_with_it_transitively() {
    let api = Api::new().await;
    let (session, tid, parent, parent_id) = api.tenant_with_api_key("lineage@example.com").await;
    let (child, child_id) = api.new_key(&tid, &parent, "child", None).await;
    let (grandchild, _) = api.new_key(&tid, &child, "grandchild", None).await;
    let (sibling, _) = api.new_key(&tid, &session, "sibling", None).await;

    let listed = api.list_keys(&tid, &session).await;
    let created_by: Vec<&Value> = listed.iter().map(|k| &k["created_by"]).collect();
    assert_eq!(
        created_by,
        [
            &Value::Null,
            &json!(parent_id),
            &json!(child_id),
            &Value::Null
        ]
    );

    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/api-keys/{parent_id}"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!api.works(&tid, &parent).await);
    assert!(
        !api.works(&tid, &child).await,
        "the child dies with its parent"
    );
    assert!(!api.works(&tid, &grandchild).await, "and so does its child");
    assert!(
        api.works(&tid, &sibling).await,
        "a key the parent did not make lives"
    );
    assert_eq!(api.list_keys(&tid, &session).await.len(), 1);
}

#[tokio::test]
async fn a_key_cannot_grant_a_scope_it_lacks_and_defaults_to_its_own() {
    let api = Api::new().await;
    let (session, tid, _, _) = api.tenant_with_api_key("grant@example.com").await;
    let (limited, _) = api
        .new_key(&tid, &session, "limited", Some(&["keys", "tokens"]))
        .await;

    let r = api
        .create_key(&tid, &limited, "wider", Some(&["tokens", "issuers"]))
        .await;
    let detail = r.problem(StatusCode::FORBIDDEN);
    assert_eq!(
        detail,
        "cannot grant the `issuers` scope: this API key does not hold it"
    );
    let names: Vec<String> = api
        .state
        .store()
        .api_keys_of(&tid)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["ci", "limited"], "nothing stored");

    // Without `scopes`: everything the creator holds, and no more.
    let r = api.create_key(&tid, &limited, "same", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["scopes"], json!(["tokens", "keys"]));
    let r = api
        .create_key(&tid, &limited, "fewer", Some(&["tokens"]))
        .await;
    assert_eq!(r.json["scopes"], json!(["tokens"]));
    // A session holds every scope.
    let r = api.create_key(&tid, &session, "all", None).await;
    assert_eq!(
        r.json["scopes"],
        json!([
            "tokens", "clients", "messages", "usage", "issuers", "keys", "tenant"
        ])
    );
    // An unknown scope is a bad body.
    let r = api
        .create_key(&tid, &session, "odd", Some(&["everything"]))
        .await;
    let detail = r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("everything"), "{detail}");
}

#[tokio::test]
async fn a_key_without_tokens_cannot_mint_and_other_tenants_stay_404() {
    let api = Api::new().await;
    let (session, tid, _, _) = api.tenant_with_api_key("scoped@example.com").await;
    let (_, other_tid, _, _) = api.tenant_with_api_key("other@example.com").await;
    let (clients_only, _) = api.new_key(&tid, &session, "ops", Some(&["clients"])).await;
    let detail = api
        .mint(&tid, &clients_only, json!({}))
        .await
        .problem(StatusCode::FORBIDDEN)
        .to_owned();
    assert_eq!(detail, "this API key lacks the `tokens` scope");
    assert!(
        api.state
            .store()
            .tokens_of(&tid, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Another tenant stays invisible, whatever the scopes.
    api.mint(&other_tid, &clients_only, json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    let (tokens_only, _) = api
        .new_key(&tid, &session, "minter", Some(&["tokens"]))
        .await;
    assert_eq!(
        api.mint(&tid, &tokens_only, json!({})).await.status,
        StatusCode::CREATED
    );
    api.create_key(&tid, &tokens_only, "more", Some(&[]))
        .await
        .problem(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_tenant_route_checks_its_scope() {
    let api = Api::new().await;
    let (session, tid, _, _) = api.tenant_with_api_key("every@example.com").await;
    let (bare, _) = api.new_key(&tid, &session, "bare", Some(&[])).await;
    let doc = api
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .json;
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        if !template.starts_with("/v1/tenants/{tid}") {
            continue;
        }
        let mut path = template.replace("{tid}", &tid);
        for param in ["{key_id}", "{id}"] {
            path = path.replace(param, &Uuid::new_v4().to_string());
        }
        path = path
            .replace("{jti}", "some-jti")
            .replace("{client_id}", "dev-1");
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let r = api
                .call(method.clone(), &path, Some(&bare), Some(json!({})))
                .await;
            if (method.clone(), template.as_str()) == (Method::GET, "/v1/tenants/{tid}") {
                assert_eq!(r.status, StatusCode::OK, "any key sees its own tenant");
                continue;
            }
            let detail = r.problem(StatusCode::FORBIDDEN);
            assert!(
                detail.contains("scope") || detail.contains("session token"),
                "{method} {template}: {detail}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} routes checked");
}
