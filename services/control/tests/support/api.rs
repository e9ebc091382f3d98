//! The REST API through `app(state).oneshot(..)`, on a real SQLite file or
//! a real Postgres database: what the router tests share.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aerie_control::keys::Kek;
use aerie_control::{AppState, Config, app};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use super::{endpoints, postgres_url, read, sqlite_url};

pub struct Api {
    pub state: AppState,
    pub app: Router,
    /// The SQLite file's directory (none on Postgres).
    _dir: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub json: Value,
}

impl Reply {
    /// Asserts a problem+json answer with `status` and returns its detail.
    #[track_caller]
    pub fn problem(&self, status: StatusCode) -> &str {
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

pub const ISSUER: &str = "http://127.0.0.1:8080";

impl Api {
    /// On a fresh SQLite file.
    pub async fn new() -> Api {
        Api::with_config(Config::new(endpoints(), ISSUER, Kek::generate())).await
    }

    pub async fn with_config(config: Config) -> Api {
        let (dir, url) = sqlite_url();
        Api::at(&url, config, Some(dir)).await
    }

    /// On a fresh database of the shared Postgres cluster.
    pub async fn on_postgres() -> Api {
        let url = postgres_url().await;
        let config = Config::new(endpoints(), ISSUER, Kek::generate());
        Api::at(&url, config, None).await
    }

    /// The same database and state, with `broker` attached.
    pub fn with_broker(self, broker: std::sync::Arc<dyn aerie_control::broker::BrokerPort>) -> Api {
        let state = self.state.with_broker(broker);
        Api {
            app: app(state.clone()),
            state,
            _dir: self._dir,
        }
    }

    async fn at(url: &str, config: Config, dir: Option<tempfile::TempDir>) -> Api {
        let state = AppState::open(url, config).await.expect("state");
        Api {
            app: app(state.clone()),
            state,
            _dir: dir,
        }
    }

    pub async fn raw(
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
        let (status, content_type, json) = read(res).await;
        Reply {
            status,
            content_type,
            json,
        }
    }

    pub async fn call(
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
    pub async fn sign_up(&self, email: &str) -> (Uuid, String) {
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

    pub async fn create_tenant(&self, token: &str, name: &str) -> Value {
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

    /// Creates a tenant API key with `credential` and returns the key.
    pub async fn create_tenant_key(&self, credential: &str, tid: &str, name: &str) -> String {
        let r = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tid}/api-keys"),
                Some(credential),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json["key"].as_str().unwrap().to_owned()
    }

    pub async fn tenant_count(&self, account: Uuid) -> usize {
        self.state.store().tenants_of(account).await.unwrap().len()
    }
}
