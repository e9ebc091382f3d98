//! The client against real local HTTP servers (raw sockets, so a test can
//! send what no well-behaved server would).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{DestinationPolicy, Egress, EgressError, Forbidden, Limits};

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(10),
    max_body_bytes: 256 * 1024,
};

/// A loopback server: counts requests and answers each with `answer`.
struct TestServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

async fn server<F, Fut>(answer: F) -> TestServer
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            read_head(&mut stream).await;
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(stream));
        }
    });
    TestServer { port, requests }
}

async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

async fn ok_json(mut stream: TcpStream) {
    let body = br#"{"keys":[]}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
}

fn allowing() -> Egress {
    Egress::new(DestinationPolicy::ALLOW_PRIVATE)
}

#[tokio::test]
async fn an_endless_chunked_body_is_read_only_up_to_the_cap() {
    const CHUNK: usize = 16 * 1024;
    let written = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let done_tx = Arc::new(parking_lot::Mutex::new(Some(done_tx)));
    let counter = written.clone();
    let s = server(move |mut stream| {
        let counter = counter.clone();
        let done_tx = done_tx.clone();
        async move {
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', CHUNK));
            chunk.extend_from_slice(b"\r\n");
            let mut ok = stream.write_all(head).await.is_ok();
            // Forever, until the client hangs up.
            while ok {
                ok = stream.write_all(&chunk).await.is_ok();
                counter.fetch_add(CHUNK, Ordering::SeqCst);
            }
            if let Some(tx) = done_tx.lock().take() {
                let _ = tx.send(());
            }
        }
    })
    .await;
    let started = Instant::now();
    let got = allowing()
        .get("test", &format!("http://127.0.0.1:{}/jwks", s.port), LIMITS)
        .await;
    match got {
        Err(EgressError::TooLarge { limit, read }) => {
            assert_eq!(limit, LIMITS.max_body_bytes);
            assert!(read <= limit + CHUNK, "read {read} bytes");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // It stopped at the cap, long before the timeout, and hung up: the
    // server's writes fail once the socket buffers are full.
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(5), done_rx)
        .await
        .expect("the client hung up")
        .unwrap();
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 64 * 1024 * 1024, "the server sent {sent} bytes");
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_reading() {
    let s = server(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n{")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let got = allowing()
        .get("test", &format!("http://127.0.0.1:{}/", s.port), LIMITS)
        .await;
    assert!(
        matches!(got, Err(EgressError::TooLarge { read: 0, .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = server(ok_json).await;
    let location = format!("http://127.0.0.1:{}/internal/admin", target.port);
    let redirecting = server(move |mut stream| {
        let location = location.clone();
        async move {
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
    })
    .await;
    let got = allowing()
        .get(
            "test",
            &format!("http://127.0.0.1:{}/jwks", redirecting.port),
            LIMITS,
        )
        .await;
    assert!(
        matches!(got, Err(EgressError::Redirect(s)) if s.as_u16() == 302),
        "{got:?}"
    );
    assert_eq!(redirecting.requests.load(Ordering::SeqCst), 1);
    assert_eq!(target.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn loopback_destinations_are_refused_unless_the_operator_allows_them() {
    let s = server(ok_json).await;
    let public_only = Egress::new(DestinationPolicy::PUBLIC_ONLY);
    let port = s.port;
    for url in [
        format!("http://127.0.0.1:{port}/jwks"),
        format!("http://127.1:{port}/jwks"),
        format!("http://2130706433:{port}/jwks"),
        format!("http://[::ffff:127.0.0.1]:{port}/jwks"),
        // A name that resolves to loopback, refused by the resolver.
        format!("http://localhost:{port}/jwks"),
    ] {
        let got = public_only.get("test", &url, LIMITS).await;
        match got {
            Err(EgressError::Refused(r)) => assert_eq!(r.why, Forbidden::Loopback, "{url}"),
            other => panic!("{url}: expected Refused, got {other:?}"),
        }
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 0, "nothing reached it");

    for url in [
        format!("http://127.0.0.1:{port}/jwks"),
        format!("http://localhost:{port}/jwks"),
    ] {
        let body = allowing().get("test", &url, LIMITS).await.unwrap();
        assert_eq!(&body[..], br#"{"keys":[]}"#);
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_destination_that_never_answers_times_out() {
    let s = server(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let started = Instant::now();
    let got = allowing()
        .get("test", &format!("http://127.0.0.1:{}/", s.port), limits)
        .await;
    assert!(matches!(got, Err(EgressError::Timeout(_))), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn only_http_and_https_urls_are_fetched() {
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "not a url",
        "http://",
    ] {
        let got = allowing().get("test", url, LIMITS).await;
        assert!(
            matches!(got, Err(EgressError::InvalidUrl)),
            "{url}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_status_other_than_2xx_is_an_error() {
    let s = server(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    })
    .await;
    let got = allowing()
        .get("test", &format!("http://127.0.0.1:{}/", s.port), LIMITS)
        .await;
    assert!(
        matches!(got, Err(EgressError::Status(s)) if s.as_u16() == 404),
        "{got:?}"
    );
}
