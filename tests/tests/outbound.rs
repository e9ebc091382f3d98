//! Outbound requests a tenant makes the broker send (JWKS URLs), through the
//! real `aerie serve`: loopback and other private destinations are refused
//! unless the operator allows them, and one tenant's silent URLs delay no
//! other tenant's revocations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Packet, ProtocolVersion, ReasonCode};
use aerie_testdb::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const IDP: &str = "https://idp.example.com/";
const OUTBOUND: &str = "aerie_outbound_requests_total";

/// A loopback HTTP server that answers every request with `body` and
/// counts the requests it got (whatever their path).
struct CountingServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

async fn counting_server(body: String) -> CountingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    CountingServer { port, requests }
}

/// A loopback port that accepts connections and never answers.
async fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// An Ed25519 key of a tenant's identity provider: (signing key, JWK).
fn idp_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
                     "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())});
    (EncodingKey::from_ed_der(&pair.serialize_der()), jwk)
}

fn sign(key: &EncodingKey, kid: &str, tenant: &Tenant) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": IDP, "aud": "mqtt", "sub": "d", "tnt": tenant.id,
                        "iat": now, "exp": now + 600, "jti": format!("j-{now}")});
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn register(server: &Server, tenant: &Tenant, issuer: &str, url: &str) {
    server
        .api(
            "POST",
            &format!("/v1/tenants/{}/issuers", tenant.id),
            Some(&tenant.api_key),
            Some(&json!({"issuer": issuer, "jwks_url": url})),
        )
        .expect(201);
}

/// CONNECTs with `token` for up to 3 s; the last CONNACK's reason.
async fn connack_within_3s(server: &Server, token: &str, want: ReasonCode) -> ReasonCode {
    let since = Instant::now();
    loop {
        let (_c, ack) = RawClient::connect_with(
            server.mqtt,
            with_password(ProtocolVersion::V5, "dev", Some(token)),
        )
        .await;
        if ack.reason == want || since.elapsed() > Duration::from_secs(3) {
            return ack.reason;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_jwks_url_on_loopback_is_fetched_only_when_the_operator_allows_private_destinations() {
    let (key, jwk) = idp_key("idp-1");
    let jwks = counting_server(json!({"keys": [jwk]}).to_string()).await;
    let urls = [
        format!("http://127.0.0.1:{}/jwks.json", jwks.port),
        // A name resolving to loopback, and a path no tenant should reach.
        format!("http://localhost:{}/internal/admin", jwks.port),
    ];

    let guarded = ServerOptions::default().anonymous(false).start();
    let green = tenant(&guarded, "green@example.com");
    register(&guarded, &green, IDP, &urls[0]);
    register(&guarded, &green, "https://other.example.com/", &urls[1]);
    let token = sign(&key, "idp-1", &green);
    assert_eq!(
        connack_within_3s(&guarded, &token, ReasonCode::SUCCESS).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        jwks.requests.load(Ordering::SeqCst),
        0,
        "a request reached the loopback server"
    );
    assert!(guarded.metric(OUTBOUND, "outcome=\"refused\"") >= 2.0);

    // The flag this time (the harness's option sets the variable).
    let allowing = ServerOptions::default()
        .anonymous(false)
        .args(&["--allow-private-destinations"])
        .start();
    let green = tenant(&allowing, "green@example.com");
    register(&allowing, &green, IDP, &urls[0]);
    let token = sign(&key, "idp-1", &green);
    assert_eq!(
        connack_within_3s(&allowing, &token, ReasonCode::SUCCESS).await,
        ReasonCode::SUCCESS
    );
    assert!(jwks.requests.load(Ordering::SeqCst) >= 1);
    assert!(allowing.metric(OUTBOUND, "purpose=\"jwks\",outcome=\"ok\"") >= 1.0);
}

#[tokio::test]
async fn five_silent_jwks_urls_of_one_tenant_do_not_delay_another_tenants_revocation() {
    // Private destinations allowed: the silent URLs are really connected to.
    let server = ServerOptions::default()
        .anonymous(false)
        .allow_private_destinations()
        .start();
    let alice = tenant(&server, "alice@example.com");
    let (token, jti) = mint(&server, &alice, json!({}));
    let (mut client, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "alice-dev", Some(&token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);

    let mallory = tenant(&server, "mallory@example.com");
    let silent = silent_server().await;
    for i in 0..5 {
        register(
            &server,
            &mallory,
            &format!("https://idp{i}.example.com/"),
            &format!("http://127.0.0.1:{silent}/jwks{i}.json"),
        );
    }
    // Reloads have met the silent URLs by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/tokens/{jti}", alice.id),
            Some(&alice.api_key),
            None,
        )
        .expect(204);
    let since = Instant::now();
    match client.recv_within(Duration::from_millis(1500)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!(
            "not disconnected within 1.5 s of the revocation ({:?}): {other:?}",
            since.elapsed()
        ),
    }
}

/// The broker's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

/// A loopback server whose every answer is a chunked body that never ends
/// (until the client hangs up).
async fn endless_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                let mut chunk = b"4000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b' ', 0x4000));
                chunk.extend_from_slice(b"\r\n");
                let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
                while ok {
                    ok = stream.write_all(&chunk).await.is_ok();
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_endless_jwks_body_is_cut_at_the_cap_and_the_broker_does_not_grow() {
    let server = ServerOptions::default()
        .anonymous(false)
        .allow_private_destinations()
        .start();
    let green = tenant(&server, "green@example.com");
    let port = endless_server().await;
    let before = rss_bytes(server.pid());
    register(
        &server,
        &green,
        IDP,
        &format!("http://127.0.0.1:{port}/jwks.json"),
    );

    // Until the fetch was cut, or well past the fetch timeout (3 s).
    let too_large = || server.metric(OUTBOUND, "purpose=\"jwks\",outcome=\"too_large\"");
    let since = Instant::now();
    while too_large() < 1.0 && since.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = rss_bytes(server.pid()).saturating_sub(before);
    assert!(grown < 32 * 1024 * 1024, "the broker grew by {grown} bytes");
    assert!(too_large() >= 1.0, "the fetch was not cut at the cap");
}

#[tokio::test]
async fn an_unknown_kid_refetches_only_the_issuer_of_the_tokens_tenant() {
    let server = ServerOptions::default()
        .anonymous(false)
        .allow_private_destinations()
        .start();
    let (green_key, green_jwk) = idp_key("green-1");
    let (blue_key, blue_jwk) = idp_key("blue-1");
    let green_jwks = counting_server(json!({"keys": [green_jwk]}).to_string()).await;
    let blue_jwks = counting_server(json!({"keys": [blue_jwk]}).to_string()).await;
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    register(
        &server,
        &green,
        IDP,
        &format!("http://127.0.0.1:{}/jwks.json", green_jwks.port),
    );
    register(
        &server,
        &blue,
        IDP,
        &format!("http://127.0.0.1:{}/jwks.json", blue_jwks.port),
    );
    for (key, kid, t) in [
        (&green_key, "green-1", &green),
        (&blue_key, "blue-1", &blue),
    ] {
        let token = sign(key, kid, t);
        assert_eq!(
            connack_within_3s(&server, &token, ReasonCode::SUCCESS).await,
            ReasonCode::SUCCESS
        );
    }
    let green_before = green_jwks.requests.load(Ordering::SeqCst);
    let blue_before = blue_jwks.requests.load(Ordering::SeqCst);

    // Blue's token names a kid its issuer does not publish.
    let (stranger, _) = idp_key("blue-unknown");
    let token = sign(&stranger, "blue-unknown", &blue);
    for _ in 0..2 {
        let (_c, ack) = RawClient::connect_with(
            server.mqtt,
            with_password(ProtocolVersion::V5, "dev", Some(&token)),
        )
        .await;
        assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    // Blue's issuer was asked once (the second token within 5 s was not
    // worth another request); green's was left alone.
    assert_eq!(blue_jwks.requests.load(Ordering::SeqCst), blue_before + 1);
    assert_eq!(green_jwks.requests.load(Ordering::SeqCst), green_before);
}
