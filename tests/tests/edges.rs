//! The edges of the listeners: a TLS handshake, a WebSocket upgrade and an
//! HTTP request each hold a connection permit from the accept and have a
//! time limit, so silent or slow clients cannot hold more than the permits
//! nor hold them for long; failed TLS handshakes are counted by reason.
//!
//! The limits are set through `AERIE_*` variables, short (1 s) so the tests
//! stay quick.

use std::time::{Duration, Instant};

use aerie_e2e::raw::connect_packet;
use aerie_e2e::tls::TestCert;
use aerie_e2e::{RawClient, Server, ServerOptions, ws};
use aerie_proto::{ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long past a 1 s limit a socket may stay open on a loaded box.
const WELL_BEFORE: Duration = Duration::from_secs(4);

/// Waits until every listener is serving (the HTTP one starts last) and
/// the connections the harness opened while the server started have ended,
/// so the test starts with every permit free.
async fn settle(server: &Server) {
    assert_eq!(server.http_get("/healthz").0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Connections that send nothing.
async fn silent(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Let the broker accept them (and take their permits) before going on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    v
}

/// Waits for the broker to close `s` (end of stream or reset); how long it
/// took from `since`, or `None` if it is still open after `limit`.
async fn closed_by(s: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::from_std(since + limit);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn assert_all_closed_by_the_timeout(sockets: &mut [TcpStream], since: Instant) {
    for (i, s) in sockets.iter_mut().enumerate() {
        let took = closed_by(s, since, WELL_BEFORE).await;
        assert!(
            took.is_some(),
            "silent socket {i} still open after {WELL_BEFORE:?}"
        );
    }
}

/// A TLS client (v5) that connects and gets CONNACK success.
async fn tls_client_connects(cert: &TestCert, server: &Server, id: &str) {
    let stream = cert.connect(server.mqtts).await;
    let (_c, ack) =
        RawClient::connect_over(stream, connect_packet(ProtocolVersion::V5, id, true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

fn tls_server(cert: &TestCert) -> Server {
    cert.server_options()
        .env("AERIE_MAX_CONNECTIONS", "3")
        .env("AERIE_HANDSHAKE_TIMEOUT", "1")
        .start()
}

#[tokio::test]
async fn silent_sockets_on_the_tls_listener_hold_permits_only_until_the_handshake_timeout() {
    let cert = TestCert::localhost();
    let server = tls_server(&cert);
    settle(&server).await;
    let since = Instant::now();
    let mut sockets = silent(server.mqtts, 3).await;
    // Every permit is held by a handshake that has not started: a real
    // client is turned away rather than queued behind them...
    let tcp = TcpStream::connect(server.mqtts).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio_rustls::TlsConnector::from(cert.client_config())
        .connect(name, tcp)
        .await;
    assert!(refused.is_err(), "a fourth connection got a TLS session");
    // ... until the handshake timeout closes the silent ones.
    assert_all_closed_by_the_timeout(&mut sockets, since).await;
    tls_client_connects(&cert, &server, "after-slowloris").await;
    assert_eq!(
        server.wait_metric("aerie_handshake_timeouts_total", "listener=\"mqtts\"", 3.0),
        3.0
    );
    assert_eq!(
        server.metric(
            "aerie_tls_handshake_failures_total",
            "listener=\"mqtts\",reason=\"timeout\""
        ),
        3.0
    );
    assert!(server.metric("aerie_connect_refused_total", "max_connections") >= 1.0);
}

#[tokio::test]
async fn silent_sockets_on_the_websocket_listener_hold_permits_only_until_the_handshake_timeout() {
    let server = ServerOptions::default()
        .env("AERIE_MAX_CONNECTIONS", "3")
        .env("AERIE_HANDSHAKE_TIMEOUT", "1")
        .start();
    settle(&server).await;
    let since = Instant::now();
    let mut sockets = silent(server.ws, 3).await;
    // Before the upgrade, a WebSocket connection holds a permit too.
    let tcp = TcpStream::connect(server.ws).await.expect("connect");
    let url = format!("ws://{}/mqtt", server.ws);
    assert!(
        ws::handshake(tcp, &url, &["mqtt"]).await.is_err(),
        "a fourth connection was upgraded"
    );
    assert_all_closed_by_the_timeout(&mut sockets, since).await;
    // A permit taken before the upgrade goes on into the MQTT connection:
    // three upgraded clients fill the listener, a fourth is refused. (The
    // broker gives a timed-out socket's permit back just after closing it:
    // an upgrade that meets one not yet given back is tried again.)
    let mut clients = Vec::new();
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(2);
        let socket = loop {
            match ws::open(server.ws, &["mqtt"]).await {
                Ok((socket, _)) => break socket,
                Err(e) => assert!(Instant::now() < deadline, "upgrade {i}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let connect = connect_packet(ProtocolVersion::V5, &format!("ws-{i}"), true);
        let (c, ack) = RawClient::connect_over(ws::byte_stream(socket), connect).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        clients.push(c);
    }
    let tcp = TcpStream::connect(server.ws).await.expect("connect");
    assert!(ws::handshake(tcp, &url, &["mqtt"]).await.is_err());
    assert_eq!(
        server.wait_metric(
            "aerie_handshake_timeouts_total",
            "listener=\"ws\",stage=\"headers\"",
            3.0
        ),
        3.0
    );
}

fn trusting_no_one() -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_by_reason() {
    let cert = TestCert::localhost();
    let server = tls_server(&cert);
    settle(&server).await;
    // Plain MQTT on the TLS port.
    let mut plain = TcpStream::connect(server.mqtts).await.expect("connect");
    plain
        .write_all(&[
            0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0, 0,
        ])
        .await
        .unwrap();
    assert!(
        closed_by(&mut plain, Instant::now(), WELL_BEFORE)
            .await
            .is_some()
    );
    // A client that does not trust the certificate (it trusts no one): it
    // says so with an alert and gives up. On both TLS listeners.
    for addr in [server.mqtts, server.wss] {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let untrusted = tokio_rustls::TlsConnector::from(trusting_no_one())
            .connect(name, tcp)
            .await;
        assert!(untrusted.is_err());
    }
    let failures =
        |labels: &str| server.wait_metric("aerie_tls_handshake_failures_total", labels, 1.0);
    assert_eq!(failures("listener=\"mqtts\",reason=\"not_tls\""), 1.0);
    assert_eq!(
        failures("listener=\"mqtts\",reason=\"bad_certificate\""),
        1.0
    );
    assert_eq!(failures("listener=\"wss\",reason=\"bad_certificate\""), 1.0);
    // And a client that does trust it still gets in.
    tls_client_connects(&cert, &server, "trusting").await;
}

// ---- the HTTP listener -----------------------------------------------------

fn http_server() -> Server {
    ServerOptions::default()
        .env("AERIE_HTTP_MAX_CONNECTIONS", "2")
        .env("AERIE_HTTP_HEADER_TIMEOUT", "1")
        .env("AERIE_HTTP_REQUEST_TIMEOUT", "1")
        .start()
}

#[tokio::test]
async fn an_http_client_sending_one_header_line_at_a_time_is_closed_by_the_header_timeout() {
    let server = http_server();
    settle(&server).await;
    let since = Instant::now();
    let s = TcpStream::connect(server.http).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        let _ = wr.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(WELL_BEFORE, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a one-header-line-per-200-ms client was still served after {:?}",
        since.elapsed()
    );
    assert_eq!(server.http_get("/healthz").0, 200);
    assert!(server.metric("aerie_handshake_timeouts_total", "listener=\"http\"") >= 1.0);
}

#[tokio::test]
async fn silent_http_clients_hold_the_connection_cap_only_until_the_header_timeout() {
    let server = http_server();
    settle(&server).await;
    let since = Instant::now();
    let mut sockets = silent(server.http, 2).await;
    // The cap is reached: a third connection is closed unanswered.
    let mut third = TcpStream::connect(server.http).await.expect("connect");
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WELL_BEFORE, third.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "a connection over the cap was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    // The silent ones are closed at the header timeout, and a real request
    // is served again.
    assert_all_closed_by_the_timeout(&mut sockets, since).await;
    assert_eq!(server.http_get("/healthz").0, 200);
    assert!(server.metric("aerie_http_connections_refused_total", "") >= 1.0);
    let timeouts = server.metric("aerie_handshake_timeouts_total", "listener=\"http\"");
    assert!(timeouts >= 2.0, "{timeouts} header timeouts counted");
}

#[tokio::test]
async fn an_http_request_whose_body_never_arrives_is_answered_408_at_the_request_timeout() {
    let server = http_server();
    settle(&server).await;
    let mut s = TcpStream::connect(server.http).await.expect("connect");
    // Headers on time, then 10 of the 100 body bytes announced.
    s.write_all(
        b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WELL_BEFORE, s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within {WELL_BEFORE:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:aerie:problem:request-timeout"),
        "{answer}"
    );
    assert_eq!(server.metric("aerie_http_request_timeouts_total", ""), 1.0);
}
