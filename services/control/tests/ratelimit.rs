//! Rate limits on sign-up and log-in, through `app(state).oneshot(..)` with
//! the client address set as the server would (`ConnectInfo`), and tiny quotas.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use aerie_control::keys::Kek;
use aerie_control::login_backoff::BackoffPolicy;
use aerie_control::ratelimit::RateLimit;
use aerie_control::{AppState, Config, app};
use aerie_control::{auth, store};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";
/// Over 1024 bytes: refused (401) before any hashing, so these attempts take
/// milliseconds and `Retry-After` is exact.
fn fast_wrong() -> String {
    "x".repeat(1025)
}

struct Api {
    app: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

#[derive(Debug, PartialEq)]
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    json: Value,
}

/// `burst` at once, then `requests` per `period`.
fn limit(requests: u32, period: Duration, burst: u32) -> RateLimit {
    RateLimit {
        requests: NonZeroU32::new(requests).unwrap(),
        period,
        burst: NonZeroU32::new(burst).unwrap(),
    }
}

const BACKOFF: BackoffPolicy = BackoffPolicy::DEFAULT;

/// Back-off after `n` failed log-ins.
fn after_failures(n: u32) -> BackoffPolicy {
    BackoffPolicy::with_free_failures(n).unwrap()
}

const GENEROUS: RateLimit = RateLimit {
    requests: NonZeroU32::new(1000).unwrap(),
    period: Duration::from_secs(1),
    burst: NonZeroU32::new(1000).unwrap(),
};

impl Api {
    async fn new(per_ip: RateLimit, per_email: BackoffPolicy) -> Api {
        let (dir, url) = support::sqlite_url();
        let endpoints = support::endpoints();
        let mut config = Config::new(endpoints, "http://127.0.0.1:8080", Kek::generate());
        config.auth_rate_per_ip = per_ip;
        config.auth_backoff_per_email = per_email;
        let state = AppState::open(&url, config).await.expect("state");
        Api {
            app: app(state.clone()),
            state,
            _dir: dir,
        }
    }

    /// An account stored directly, so that no attempt is counted for it.
    async fn add_account(&self, email: &str) {
        let account = store::Account {
            id: uuid::Uuid::new_v4(),
            email: email.to_owned(),
            password_hash: auth::hash_password(PASSWORD.to_owned()).await.unwrap(),
            created_at: store::now(),
        };
        self.state.store().insert_account(&account).await.unwrap();
    }

    /// POST `path` with `{email, password}` from `ip` (None: no ConnectInfo).
    async fn post(&self, path: &str, ip: Option<&str>, email: &str, password: &str) -> Reply {
        let body = json!({"email": email, "password": password}).to_string();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        if let Some(ip) = ip {
            let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let retry_after = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            retry_after,
            json: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    async fn log_in(&self, ip: Option<&str>, email: &str, password: &str) -> Reply {
        self.post("/v1/sessions", ip, email, password).await
    }

    async fn sign_up(&self, ip: Option<&str>, email: &str) -> Reply {
        self.post("/v1/accounts", ip, email, PASSWORD).await
    }
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status.as_u16()).collect()
}

#[tokio::test]
async fn the_attempt_after_the_burst_from_one_ip_is_429_and_other_ips_are_unaffected() {
    let api = Api::new(limit(3, Duration::from_secs(60), 3), BACKOFF).await;
    let mut replies = vec![];
    for n in 0..4 {
        let email = format!("user{n}@example.com");
        replies.push(api.log_in(Some("192.0.2.1"), &email, &fast_wrong()).await);
    }
    assert_eq!(statuses(&replies), [401, 401, 401, 429]);
    let limited = &replies[3];
    // 3 a minute: the next attempt is allowed 20 s after the first.
    assert_eq!(limited.retry_after.as_deref(), Some("20"));
    assert_eq!(limited.json["type"], "urn:aerie:problem:rate-limited");
    assert_eq!(limited.json["title"], "Too Many Requests");
    assert_eq!(limited.json["status"], 429);
    assert_eq!(limited.json["detail"], "too many attempts; retry in 20 s");

    // Sign-up shares the IP's budget.
    let r = api.sign_up(Some("192.0.2.1"), "new@example.com").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        api.state
            .store()
            .account_by_email("new@example.com")
            .await
            .unwrap()
            .is_none()
    );
    // Other addresses are not held back.
    let r = api.sign_up(Some("192.0.2.2"), "new@example.com").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = api
        .log_in(Some("198.51.100.9"), "new@example.com", PASSWORD)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[tokio::test]
async fn an_ipv6_client_is_limited_by_its_64() {
    let api = Api::new(limit(2, Duration::from_secs(60), 2), BACKOFF).await;
    let wrong = fast_wrong();
    let replies = [
        api.log_in(Some("[2001:db8:1:2::1]"), "a@example.com", &wrong)
            .await,
        api.log_in(Some("[2001:db8:1:2::ffff]"), "b@example.com", &wrong)
            .await,
        api.log_in(Some("[2001:db8:1:2:abcd::9]"), "c@example.com", &wrong)
            .await,
        api.log_in(Some("[2001:db8:1:3::1]"), "d@example.com", &wrong)
            .await,
    ];
    assert_eq!(statuses(&replies), [401, 401, 429, 401]);
}

#[tokio::test]
async fn a_strangers_wrong_passwords_do_not_stop_the_owners_password_from_a_fresh_ip() {
    let api = Api::new(GENEROUS, BACKOFF).await;
    api.add_account("ada@example.com").await;
    let stranger = Some("192.0.2.66");
    let mut tries = vec![];
    for n in 0..10 {
        let spelling = ["ada@example.com", "  ADA@Example.com "][n % 2];
        tries.push(api.log_in(stranger, spelling, &fast_wrong()).await);
    }
    assert_eq!(statuses(&tries), [401; 10]);
    // The email is backed off now, for the address that failed: even the right
    // password from there waits 30 s.
    let held = api.log_in(stranger, "ada@example.com", PASSWORD).await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(held.retry_after.as_deref(), Some("30"));
    // The owner, from an address that has not failed for this email, gets in.
    let owner = api
        .log_in(Some("198.51.100.7"), "ada@example.com", PASSWORD)
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.json);
    // A stranger trying from a fresh address gets one guess, then doubles the wait.
    let fresh = Some("203.0.113.5");
    let guess = api.log_in(fresh, "ada@example.com", &fast_wrong()).await;
    assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    let held = api.log_in(fresh, "ada@example.com", &fast_wrong()).await;
    assert_eq!(held.retry_after.as_deref(), Some("60"));
    let held = api.log_in(stranger, "ada@example.com", &fast_wrong()).await;
    assert_eq!(held.retry_after.as_deref(), Some("60"));
    // Other emails are not held back.
    let bob = api.log_in(stranger, "bob@example.com", &fast_wrong()).await;
    assert_eq!(bob.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn successes_never_back_an_email_off() {
    let api = Api::new(GENEROUS, after_failures(2)).await;
    api.add_account("ada@example.com").await;
    let ip = Some("192.0.2.2");
    for _ in 0..5 {
        let r = api.log_in(ip, "ada@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = api.sign_up(ip, "ada@example.com").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    let wrong = api.log_in(ip, "ada@example.com", &fast_wrong()).await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "one failure is free"
    );
}

#[tokio::test]
async fn known_and_unknown_emails_get_identical_answers() {
    let api = Api::new(GENEROUS, after_failures(2)).await;
    api.add_account("ada@example.com").await;
    let mut runs = vec![];
    for email in ["ada@example.com", "nobody@example.com"] {
        let mut replies = vec![];
        for _ in 0..3 {
            replies.push(api.log_in(Some("192.0.2.1"), email, "wrong password").await);
        }
        runs.push(replies);
    }
    let (known, unknown) = (&runs[0], &runs[1]);
    assert_eq!(statuses(known), [401, 401, 429]);
    assert_eq!(statuses(unknown), [401, 401, 429]);
    assert_eq!(known[..2], unknown[..2], "identical 401s");
    // Each run's 429 comes right after its second failure, so the seconds to
    // wait match (up to rounding when they straddle a second).
    let wait = |r: &Reply| r.retry_after.as_deref().unwrap().parse::<u64>().unwrap();
    assert!(wait(&known[2]).abs_diff(wait(&unknown[2])) <= 1);
    for field in ["type", "title", "status"] {
        assert_eq!(known[2].json[field], unknown[2].json[field]);
    }
}

#[tokio::test]
async fn after_the_window_attempts_pass_again() {
    // 2 per second, 2 at once.
    let api = Api::new(limit(2, Duration::from_secs(1), 2), BACKOFF).await;
    api.add_account("ada@example.com").await;
    let ip = Some("192.0.2.2");
    let burst = [
        api.log_in(ip, "ada@example.com", &fast_wrong()).await,
        api.log_in(ip, "ada@example.com", &fast_wrong()).await,
        api.log_in(ip, "ada@example.com", PASSWORD).await,
    ];
    assert_eq!(statuses(&burst), [401, 401, 429]);
    assert_eq!(burst[2].retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = [
        api.log_in(ip, "ada@example.com", PASSWORD).await,
        api.log_in(ip, "ada@example.com", &fast_wrong()).await,
    ];
    assert_eq!(statuses(&again), [200, 401]);
}

#[tokio::test]
async fn without_a_client_address_all_requests_share_one_key() {
    let api = Api::new(limit(2, Duration::from_secs(60), 2), BACKOFF).await;
    let replies = [
        api.log_in(None, "a@example.com", &fast_wrong()).await,
        api.log_in(None, "b@example.com", &fast_wrong()).await,
        api.log_in(None, "c@example.com", &fast_wrong()).await,
    ];
    assert_eq!(statuses(&replies), [401, 401, 429]);
}
