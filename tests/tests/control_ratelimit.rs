//! Log-in rate limits of the real `aerie serve` over real TCP: the client IP
//! is the TCP peer, set with `--auth-rate-per-ip`/`--auth-burst-per-ip`; the
//! per-email back-off after failed log-ins holds back only the addresses that failed.

use std::net::{IpAddr, SocketAddr};

use aerie_e2e::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A wrong log-in POST from `from` (any 127/8 address is this host's loopback).
/// Returns (status, Retry-After, raw response).
async fn log_in(server: &Server, from: &str, email: &str) -> (u16, Option<String>, String) {
    // Over 1024 bytes: refused before any hashing (fast, and a 401 for everyone).
    post(server, from, "/v1/sessions", email, &"x".repeat(1025)).await
}

/// POSTs `{email, password}` to `path` from `from`.
async fn post(
    server: &Server,
    from: &str,
    path: &str,
    email: &str,
    password: &str,
) -> (u16, Option<String>, String) {
    let from: IpAddr = from.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(server.http).await.expect("connect http");
    let body = format!(r#"{{"email":"{email}","password":"{password}"}}"#);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = response
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .map(str::to_owned);
    (status, retry_after, response)
}

#[tokio::test]
async fn the_third_log_in_from_one_address_is_429_over_tcp_and_other_addresses_pass() {
    let server = Server::start(&["--auth-rate-per-ip", "2", "--auth-burst-per-ip", "2"]);
    let mut seen = vec![];
    for n in 0..3 {
        seen.push(log_in(&server, "127.0.0.1", &format!("u{n}@example.com")).await);
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [401, 401, 429], "{seen:#?}");
    let (_, retry_after, response) = &seen[2];
    // 2 a minute: the next attempt is allowed 30 s after the first.
    assert_eq!(retry_after.as_deref(), Some("30"), "{response}");
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains(r#""type":"urn:aerie:problem:rate-limited""#),
        "{response}"
    );

    // Another peer address has its own budget.
    let (status, _, response) = log_in(&server, "127.0.0.2", "u9@example.com").await;
    assert_eq!(status, 401, "{response}");

    let refused = server.wait_metric("aerie_control_rate_limited_total", r#"key="ip""#, 1.0);
    assert_eq!(refused, 1.0);
    let (_, metrics) = server.http_get("/metrics");
    assert!(!metrics.contains("127.0.0.1\""), "no address as a label");
    assert!(!metrics.contains("example.com"), "no email as a label");
}

#[tokio::test]
async fn ten_wrong_passwords_from_a_stranger_do_not_lock_the_owner_out() {
    // A per-IP burst above the 10 failures, so that the email's back-off answers.
    let server = Server::start(&["--auth-burst-per-ip", "20"]);
    let password = "correct horse battery";
    let (status, _, response) = post(
        &server,
        "127.0.0.1",
        "/v1/accounts",
        "ada@example.com",
        password,
    )
    .await;
    assert_eq!(status, 201, "{response}");
    // Ten failures (the default), all from one stranger's address.
    let mut seen = vec![];
    for _ in 0..10 {
        seen.push(log_in(&server, "127.0.0.66", "ada@example.com").await.0);
    }
    assert_eq!(seen, [401; 10]);
    let (status, retry_after, response) = post(
        &server,
        "127.0.0.66",
        "/v1/sessions",
        "ada@example.com",
        password,
    )
    .await;
    assert_eq!(status, 429, "{response}");
    assert_eq!(retry_after.as_deref(), Some("30"), "{response}");
    // The owner's right password from another address passes.
    let (status, _, response) = post(
        &server,
        "127.0.0.7",
        "/v1/sessions",
        "ada@example.com",
        password,
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let refused = server.wait_metric("aerie_control_rate_limited_total", r#"key="account""#, 1.0);
    assert_eq!(refused, 1.0);
}
