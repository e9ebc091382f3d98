//! A tiny OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, on a free loopback port, in the test process,
//! over plain HTTP or HTTPS (optionally requiring a client certificate).
//! It keeps every body as received (to search for leaked secrets) and the
//! decoded spans.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::tls::TestCert;

/// One exported span, flattened: its name, its ids (hex, as W3C trace
/// context writes them; `parent_span_id` empty for a root), its attributes
/// and its resource's attributes, every value as text.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    spans: Vec<ReceivedSpan>,
}

/// Runs until dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    received: Arc<Mutex<Received>>,
    stop: CancellationToken,
}

impl OtlpReceiver {
    /// Plain HTTP.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::serve(None)
    }

    /// HTTPS with `server`'s certificate; with `client_ca`, only a client
    /// whose certificate that one verifies gets a TLS session (mutual TLS).
    pub fn start_tls(server: &TestCert, client_ca: Option<&TestCert>) -> OtlpReceiver {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der.clone()).expect("trust the client CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = PrivateKeyDer::from_pem_file(&server.key_pem).expect("the server key");
        let config = builder
            .with_single_cert(vec![server.der.clone()], key)
            .expect("server TLS config");
        OtlpReceiver::serve(Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn serve(tls: Option<TlsAcceptor>) -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind OTLP receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(received.clone());
        let stopped = stop.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move { stopped.cancelled().await };
                match tls {
                    None => axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .unwrap(),
                    Some(acceptor) => axum::serve(TlsListener { listener, acceptor }, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .unwrap(),
                }
            });
        });
        OtlpReceiver {
            addr,
            scheme,
            received,
            stop,
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().spans.clone()
    }

    /// Whether `needle` occurs in any body received so far.
    pub fn bytes_contain(&self, needle: &[u8]) -> bool {
        self.received
            .lock()
            .bodies
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    }

    /// The first span matching `want`, waiting up to `timeout` for it.
    pub fn wait_for_span(
        &self,
        timeout: Duration,
        want: impl Fn(&ReceivedSpan) -> bool,
    ) -> Option<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans().into_iter().find(&want) {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl OtlpReceiver {
    /// The `http.request` span of the first `method` request to `route`
    /// (the route as matched, e.g. `/v1/tenants/{tid}`), waiting for it.
    pub fn request_span(&self, method: &str, route: &str) -> ReceivedSpan {
        self.wait_for_span(crate::WAIT, |s| {
            s.name == "http.request"
                && s.attr("method") == Some(method)
                && s.attr("route") == Some(route)
        })
        .unwrap_or_else(|| panic!("no span of {method} {route}: {:?}", self.names()))
    }

    /// The names of the spans received so far.
    pub fn names(&self) -> Vec<String> {
        self.spans().into_iter().map(|s| s.name).collect()
    }

    /// The first span named `name` whose attribute `key` is `value`,
    /// waiting for it.
    pub fn span_with(&self, name: &str, key: &str, value: &str) -> ReceivedSpan {
        self.wait_for_span(crate::WAIT, |s| {
            s.name == name && s.attr(key) == Some(value)
        })
        .unwrap_or_else(|| panic!("no {name} span with {key}={value}: {:?}", self.names()))
    }

    /// Asserts that no body received so far holds any of `secrets`.
    pub fn assert_none_exported(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !self.bytes_contain(secret.as_bytes()),
                "a credential was exported"
            );
        }
    }
}

/// The requests whose kicks are traced, as `(method, route)`: a token's
/// revocation and a tenant's suspension.
pub const REVOKE: (&str, &str) = ("DELETE", "/v1/tenants/{tid}/tokens/{jti}");
pub const SUSPEND: (&str, &str) = ("POST", "/v1/admin/tenants/{tid}/suspend");

/// Asserts that `child` is in `parent`'s trace, `parent`'s span its parent.
pub fn assert_child_of(child: &ReceivedSpan, parent: &ReceivedSpan) {
    assert_eq!(child.trace_id, parent.trace_id, "{parent:?}\n{child:?}");
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{parent:?}\n{child:?}"
    );
}

/// Accepts TCP connections and completes their TLS handshakes; a client
/// that fails the handshake (an untrusted certificate, none) is dropped.
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(Ok(tls)) = tokio::time::timeout(crate::WAIT, self.acceptor.accept(tcp)).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn export(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e != "identity")
    {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new()).into_response();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(&body[..]) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut received = received.lock();
    received.bodies.push(body.to_vec());
    for rs in request.resource_spans {
        let resource = rs
            .resource
            .map(|r| flatten(r.attributes))
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.spans.push(ReceivedSpan {
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: flatten(span.attributes),
                resource: resource.clone(),
            });
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(attributes: Vec<KeyValue>) -> BTreeMap<String, String> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, kv.value.map(text).unwrap_or_default()))
        .collect()
}

fn text(value: AnyValue) -> String {
    match value.value {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
