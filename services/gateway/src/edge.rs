//! The HTTP/1.1 edge of the WebSocket, WSS and HTTP listeners. Every
//! accepted socket takes a connection permit first (without one it is
//! closed at once), then its TLS handshake (WSS) and each request's headers
//! have a time limit, so a silent or slow client holds at most one permit,
//! and only for a bounded time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::metrics as m;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How one listener bounds its connections.
#[derive(Clone)]
pub struct Edge {
    /// The listener, as its flag names it (`ws`, `wss`, `http`): a metric label.
    pub name: &'static str,
    /// Held from the accept to the connection's end (an upgraded
    /// WebSocket carries its permit on into the MQTT connection).
    pub permits: Arc<Semaphore>,
    /// Counted for each connection refused for want of a permit.
    pub refused: metrics::Counter,
    /// TLS (WSS) with the time the handshake may take.
    pub tls: Option<(TlsAcceptor, Duration)>,
    /// Time a request's headers may take to arrive, counted from the first
    /// read (for a new connection, from the accept; so a silent client is
    /// closed at it too, and so is an idle keep-alive connection).
    pub header_timeout: Duration,
    pub shutdown: CancellationToken,
}

/// The permit of a request's connection, in the request's extensions, so an
/// upgrade can carry it into the connection the request turns into.
#[derive(Clone)]
pub struct HeldPermit(Arc<parking_lot::Mutex<Option<OwnedSemaphorePermit>>>);

impl HeldPermit {
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().take()
    }
}

/// Serves `app` on `listener` as `edge` says until `edge.shutdown`. Each
/// request carries its TCP peer (`ConnectInfo<SocketAddr>`) and its
/// connection's [`HeldPermit`].
pub async fn serve(listener: TcpListener, app: Router, edge: Edge) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = edge.shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!(error = %e, listener = edge.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = edge.permits.clone().try_acquire_owned() else {
            edge.refused.increment(1);
            tracing::debug!(%peer, listener = edge.name, "connection refused: no permit");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (app, edge) = (app.clone(), edge.clone());
        tokio::spawn(async move {
            match &edge.tls {
                None => serve_connection(socket, peer, permit, app, &edge).await,
                Some((acceptor, timeout)) => {
                    if let Some(stream) =
                        crate::tls::handshake(acceptor, socket, *timeout, edge.name).await
                    {
                        serve_connection(stream, peer, permit, app, &edge).await
                    }
                }
            }
        });
    }
}

/// One HTTP/1.1 connection, with upgrades, until it ends or the server shuts
/// down (then the request in progress is finished first).
async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    app: Router,
    edge: &Edge,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let held = HeldPermit(Arc::new(parking_lot::Mutex::new(Some(permit))));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(held.clone());
        // A Router is an `Arc` inside and always ready: a clone per request is cheap.
        app.clone().call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = edge.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::counter!(m::HANDSHAKE_TIMEOUTS_TOTAL, "listener" => edge.name, "stage" => "headers")
                .increment(1);
        }
        tracing::debug!(%peer, listener = edge.name, error = %e, "HTTP connection ended");
    }
}
