//! REST API v1 through `app(state).oneshot(..)`, on a real SQLite file.

mod support;

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
        let (dir, url) = support::sqlite_url();
        let state = AppState::open(&url, Config::new(endpoints()))
            .await
            .expect("state");
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
