//! Sessions and the console's cookie, on SQLite and on a real Postgres: the
//! cookie authenticates wherever the session token does; a write it
//! authenticates needs the session's CSRF header and the control plane's own
//! origin; log-out ends the token and the cookie at once; sessions expire.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::on_both_databases;

use aerie_control::Config;
use aerie_control::keys::Kek;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use support::api::{Api, ISSUER};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";
const HOST: &str = "127.0.0.1:8080";

on_both_databases!(
    log_in_sets_an_http_only_strict_cookie_that_authenticates_like_the_token,
    sign_up_sets_the_cookie_too,
    a_write_with_the_cookie_needs_its_sessions_csrf_header,
    a_cross_site_form_post_with_the_cookie_is_refused,
    log_out_ends_the_token_and_the_cookie_at_once_and_clears_the_cookie,
    an_expired_session_is_refused_by_cookie_and_by_token,
    api_keys_are_no_session_to_show_or_end,
);

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    fn set_cookie(&self) -> &str {
        self.headers
            .get(header::SET_COOKIE)
            .expect("a Set-Cookie header")
            .to_str()
            .unwrap()
    }

    #[track_caller]
    fn problem(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{}", self.json);
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        self.json["detail"].as_str().unwrap()
    }
}

/// One request with the given headers (and `Host`, as a browser sends it).
async fn send(
    api: &Api,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = api
        .app
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let headers = res.headers().clone();
    let (status, _, json) = support::read(res).await;
    Answer {
        status,
        headers,
        json,
    }
}

/// The `name=value` of a `Set-Cookie` line, as a browser sends it back.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// POSTs an email and [`PASSWORD`] to `/v1/sessions` or `/v1/accounts`.
async fn credentials(api: &Api, path: &str, email: &str) -> Answer {
    let body = json!({"email": email, "password": PASSWORD});
    send(api, Method::POST, path, &[], Some(body)).await
}

struct SignedIn {
    token: String,
    csrf: String,
    cookie: String,
}

async fn log_in(api: &Api, email: &str) -> SignedIn {
    let r = credentials(api, "/v1/sessions", email).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    SignedIn {
        token: r.json["token"].as_str().unwrap().to_owned(),
        csrf: r.json["csrf_token"].as_str().unwrap().to_owned(),
        cookie: cookie_of(r.set_cookie()),
    }
}

async fn tenant_names(api: &Api, headers: &[(&str, &str)]) -> Answer {
    send(api, Method::GET, "/v1/tenants", headers, None).await
}

/// Asserts that the session cookie `cookie` and the bearer `token` are both
/// refused with 401; the cookie's detail.
async fn refused_both_ways(api: &Api, cookie: &str, token: &str) -> String {
    let bearer = format!("Bearer {token}");
    tenant_names(api, &[("authorization", &bearer)])
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let by_cookie = tenant_names(api, &[("cookie", cookie)]).await;
    by_cookie.problem(StatusCode::UNAUTHORIZED).to_owned()
}

async fn account_of(api: &Api, headers: &[(&str, &str)]) -> Answer {
    send(api, Method::GET, "/v1/account", headers, None).await
}

async fn log_in_sets_an_http_only_strict_cookie_that_authenticates_like_the_token(api: Api) {
    let (account, _) = api.sign_up("ada@example.com").await;
    let r = credentials(&api, "/v1/sessions", "ada@example.com").await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.json["token"].as_str().unwrap();
    assert_eq!(
        r.set_cookie(),
        format!("aerie_session={token}; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict")
    );
    let expires = time::OffsetDateTime::parse(
        r.json["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(59) && left <= time::Duration::hours(1));

    // The cookie alone reads what the token reads.
    let cookie = cookie_of(r.set_cookie());
    api.create_tenant(token, "Plant 1").await;
    let by_cookie = tenant_names(&api, &[("cookie", &cookie)]).await;
    assert_eq!(by_cookie.status, StatusCode::OK);
    assert_eq!(by_cookie.json[0]["name"], "Plant 1");

    // Asked on load, GET /v1/account names the account and hands the CSRF
    // token back.
    let me = account_of(&api, &[("cookie", &format!("theme=dark; {cookie}"))]).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.json);
    assert_eq!(me.json["id"], account.to_string());
    assert_eq!(me.json["email"], "ada@example.com");
    assert_eq!(me.json["session"]["csrf_token"], r.json["csrf_token"]);
    assert_eq!(me.json["session"]["expires_at"], r.json["expires_at"]);
    // Without a cookie or token: 401.
    account_of(&api, &[])
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

async fn sign_up_sets_the_cookie_too(api: Api) {
    let r = credentials(&api, "/v1/accounts", "new@example.com").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert!(r.json["csrf_token"].is_string(), "{}", r.json);
    let cookie = cookie_of(r.set_cookie());
    assert!(r.set_cookie().contains("HttpOnly; SameSite=Strict"));
    let me = account_of(&api, &[("cookie", &cookie)]).await;
    assert_eq!(me.json["email"], "new@example.com");
}

async fn a_write_with_the_cookie_needs_its_sessions_csrf_header(api: Api) {
    let (account, _) = api.sign_up("ada@example.com").await;
    let ada = log_in(&api, "ada@example.com").await;
    let other = log_in(&api, "ada@example.com").await;
    let create = |headers: Vec<(&'static str, String)>| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(
                api,
                Method::POST,
                "/v1/tenants",
                &headers,
                Some(json!({"name": "by cookie"})),
            )
            .await
        }
    };
    let no_header = create(vec![("cookie", ada.cookie.clone())]).await;
    assert!(
        no_header
            .problem(StatusCode::FORBIDDEN)
            .contains("X-Aerie-CSRF")
    );
    // Another session's CSRF token is not this one's.
    let wrong = create(vec![
        ("cookie", ada.cookie.clone()),
        ("x-aerie-csrf", other.csrf.clone()),
    ])
    .await;
    wrong.problem(StatusCode::FORBIDDEN);
    assert_eq!(api.tenant_count(account).await, 0);

    let right = create(vec![
        ("cookie", ada.cookie.clone()),
        ("x-aerie-csrf", ada.csrf.clone()),
        ("origin", format!("http://{HOST}")),
    ])
    .await;
    assert_eq!(right.status, StatusCode::CREATED, "{}", right.json);
    // A bearer token needs no CSRF header: a browser never adds it by itself.
    let bearer = create(vec![("authorization", format!("Bearer {}", ada.token))]).await;
    assert_eq!(bearer.status, StatusCode::CREATED, "{}", bearer.json);
    assert_eq!(api.tenant_count(account).await, 2);
}

async fn a_cross_site_form_post_with_the_cookie_is_refused(api: Api) {
    let (account, _) = api.sign_up("ada@example.com").await;
    let ada = log_in(&api, "ada@example.com").await;
    // What another site's <form method=post> makes the browser send (were the
    // cookie sent at all despite SameSite): its Origin, a form body, no header.
    let form = send(
        &api,
        Method::POST,
        "/v1/tenants",
        &[
            ("cookie", &ada.cookie),
            ("origin", "https://evil.example"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "cross-site"),
        ],
        None,
    )
    .await;
    assert!(form.problem(StatusCode::FORBIDDEN).contains("another site"));
    // Even with the right CSRF token, another origin is refused.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        send(
            &api,
            Method::DELETE,
            "/v1/sessions/current",
            &[
                ("cookie", &ada.cookie),
                ("x-aerie-csrf", &ada.csrf),
                (name, value),
            ],
            None,
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    }
    assert_eq!(api.tenant_count(account).await, 0);
    // The session survived all of it.
    assert_eq!(
        tenant_names(&api, &[("cookie", &ada.cookie)]).await.status,
        StatusCode::OK
    );
}

async fn log_out_ends_the_token_and_the_cookie_at_once_and_clears_the_cookie(api: Api) {
    api.sign_up("ada@example.com").await;
    let ada = log_in(&api, "ada@example.com").await;
    let elsewhere = log_in(&api, "ada@example.com").await;
    let out = send(
        &api,
        Method::DELETE,
        "/v1/sessions/current",
        &[("cookie", &ada.cookie), ("x-aerie-csrf", &ada.csrf)],
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.json);
    assert_eq!(
        out.set_cookie(),
        "aerie_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    );
    // The cookie and the token of that session stop working at once ...
    let refused = refused_both_ways(&api, &ada.cookie, &ada.token).await;
    assert!(refused.contains("log in again"), "{refused}");
    // ... while the account's other session goes on, and ends by its token.
    let other = format!("Bearer {}", elsewhere.token);
    assert_eq!(
        tenant_names(&api, &[("authorization", &other)])
            .await
            .status,
        StatusCode::OK
    );
    let out = send(
        &api,
        Method::DELETE,
        "/v1/sessions/current",
        &[("authorization", &other)],
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    tenant_names(&api, &[("cookie", &elsewhere.cookie)])
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

async fn an_expired_session_is_refused_by_cookie_and_by_token(api: Api) {
    let (account, _) = api.sign_up("ada@example.com").await;
    // Sessions last one hour: one started two hours ago has expired, one
    // started 59 minutes ago has not.
    let now = time::OffsetDateTime::now_utc();
    let old = aerie_control::session::start(&api.state, account, now - time::Duration::hours(2))
        .await
        .unwrap();
    let recent =
        aerie_control::session::start(&api.state, account, now - time::Duration::minutes(59))
            .await
            .unwrap();
    let cookie = |token: &str| format!("aerie_session={token}");
    let refused = refused_both_ways(&api, &cookie(&old.token), &old.token).await;
    assert!(refused.contains("expired"), "{refused}");
    let fresh = tenant_names(&api, &[("cookie", &cookie(&recent.token))]).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.json);
    // Starting a session purges the expired ones from the store.
    assert!(api.state.store().session(old.id).await.unwrap().is_none());
    assert!(
        api.state
            .store()
            .session(recent.id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn api_keys_are_no_session_to_show_or_end(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let t = api.create_tenant(&session, "Plant 1").await;
    let tenant_key = api
        .create_tenant_key(&session, t["id"].as_str().unwrap(), "ci")
        .await;
    let account_key = send(
        &api,
        Method::POST,
        "/v1/account/api-keys",
        &[("authorization", &format!("Bearer {session}"))],
        Some(json!({"name": "terraform"})),
    )
    .await
    .json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_account = format!("Bearer {account_key}");
    let me = account_of(&api, &[("authorization", &as_account)]).await;
    assert_eq!(me.json["email"], "ada@example.com");
    assert!(me.json.get("session").is_none(), "{}", me.json);
    send(
        &api,
        Method::DELETE,
        "/v1/sessions/current",
        &[("authorization", &as_account)],
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let as_tenant = format!("Bearer {tenant_key}");
    account_of(&api, &[("authorization", &as_tenant)])
        .await
        .problem(StatusCode::FORBIDDEN);
    // An API key in the cookie is no session.
    let cookie = format!("aerie_session={account_key}");
    tenant_names(&api, &[("cookie", &cookie)])
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_https_control_plane_sets_a_secure_host_prefixed_cookie() {
    let config = Config::new(
        support::endpoints(),
        "https://aerie.example.com",
        Kek::generate(),
    );
    let api = Api::with_config(config).await;
    api.sign_up("ada@example.com").await;
    let ada = log_in(&api, "ada@example.com").await;
    assert!(
        ada.cookie.starts_with("__Host-aerie_session="),
        "{}",
        ada.cookie
    );
    let r = credentials(&api, "/v1/sessions", "ada@example.com").await;
    assert!(
        r.set_cookie()
            .ends_with("; HttpOnly; SameSite=Strict; Secure")
    );
    assert_eq!(
        tenant_names(&api, &[("cookie", &ada.cookie)]).await.status,
        StatusCode::OK
    );
    // The plain name is not read there.
    let plain = ada.cookie.replace("__Host-", "");
    tenant_names(&api, &[("cookie", &plain)])
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Plain HTTP is not Secure.
    let http = Api::with_config(Config::new(support::endpoints(), ISSUER, Kek::generate())).await;
    http.sign_up("bob@example.com").await;
    assert!(
        !log_in(&http, "bob@example.com")
            .await
            .cookie
            .contains("__Host-")
    );
}

#[tokio::test]
async fn a_control_plane_without_tls_shows_no_tls_endpoints() {
    let mut endpoints = support::endpoints();
    endpoints.mqtts = None;
    endpoints.wss = None;
    let api = Api::with_config(Config::new(endpoints, ISSUER, Kek::generate())).await;
    let (_, token) = api.sign_up("ada@example.com").await;
    let t = api.create_tenant(&token, "Plant 1").await;
    assert_eq!(
        t["endpoints"],
        json!({"mqtt": "mqtt://127.0.0.1:1883", "ws": "ws://127.0.0.1:8083/mqtt"})
    );
}
