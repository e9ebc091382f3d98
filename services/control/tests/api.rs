//! REST API v1 through `app(state).oneshot(..)`, on a real SQLite file.

mod support;

use aerie_control::api::admin::AdminToken;
use aerie_control::keys::Kek;
use aerie_control::{AppState, Config, Endpoints, app};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

struct Api {
    state: AppState,
    app: Router,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    json: Value,
}

impl Reply {
    /// Asserts a problem+json answer with `status` and returns its detail.
    #[track_caller]
    fn problem(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{}", self.json);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(self.json["status"], status.as_u16());
        assert!(
            self.json["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:aerie:problem:")
        );
        assert!(self.json["title"].is_string());
        self.json["detail"].as_str().expect("a detail")
    }
}

const ISSUER: &str = "http://127.0.0.1:8080";

fn endpoints() -> Endpoints {
    Endpoints {
        mqtt: "mqtt://127.0.0.1:1883".into(),
        mqtts: "mqtts://127.0.0.1:8883".into(),
        ws: "ws://127.0.0.1:8083/mqtt".into(),
        wss: "wss://127.0.0.1:8084/mqtt".into(),
    }
}

impl Api {
    async fn new() -> Api {
        Api::with_config(Config::new(endpoints(), ISSUER, Kek::generate())).await
    }

    async fn with_config(config: Config) -> Api {
        let (dir, url) = support::sqlite_url();
        let state = AppState::open(&url, config).await.expect("state");
        Api {
            app: app(state.clone()),
            state,
            _dir: dir,
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            status,
            content_type,
            json,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(b) => {
                self.raw(method, path, token, Some("application/json"), b.to_string())
                    .await
            }
            None => self.raw(method, path, token, None, Body::empty()).await,
        }
    }

    /// Signs up `email` and returns (account id, session token).
    async fn sign_up(&self, email: &str) -> (Uuid, String) {
        let r = self
            .call(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"email": email, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        (
            r.json["account_id"].as_str().unwrap().parse().unwrap(),
            r.json["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn create_tenant(&self, token: &str, name: &str) -> Value {
        let r = self
            .call(
                Method::POST,
                "/v1/tenants",
                Some(token),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json
    }

    async fn tenant_count(&self, account: Uuid) -> usize {
        self.state.store().tenants_of(account).await.unwrap().len()
    }
}

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
    for token in ["garbage", "s1.e30.AAAA", "aerie_notakeyatall"] {
        api.call(Method::GET, "/v1/tenants", Some(token), None)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }

    // A token issued two hours ago has expired (sessions last one hour).
    let issued = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let expired = api.state.sessions().issue(account, issued);
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
    let fresh = api.state.sessions().issue(
        account,
        time::OffsetDateTime::now_utc() - time::Duration::minutes(59),
    );
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
    assert_eq!(api.state.store().revoked_token(&jti).await.unwrap(), None);
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
        .revoked_token(&jti)
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
