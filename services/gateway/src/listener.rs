//! Accept loops. Each takes an already-bound listener (so tests bind port 0)
//! and spawns one connection task per client, tracked for shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::Broker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::GatewayConfig;
use crate::connection::{self, ConnContext, Transport};
use crate::registry::Registry;

/// Listeners share one of these: the broker, the config, the connection
/// budget, and the shutdown signal.
#[derive(Clone)]
pub struct Gateway {
    /// One for all connections: each task holds an `Arc` (8 bytes, where
    /// the context is 32).
    ctx: Arc<ConnContext>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Gateway {
    pub fn new(broker: Broker, config: GatewayConfig) -> Gateway {
        let permits = Arc::new(Semaphore::new(config.max_connections));
        Gateway {
            ctx: Arc::new(ConnContext {
                broker,
                config: Arc::new(config),
                registry: Registry::new(),
                shutdown: CancellationToken::new(),
            }),
            permits,
            tracker: TaskTracker::new(),
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.ctx.broker
    }

    /// The live connections, by tenant.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.ctx.registry
    }

    /// Closes connections whose token is revoked or whose tenant is
    /// suspended or deleted, as the verifier's directory changes.
    pub fn spawn_enforcer(&self) -> Option<tokio::task::JoinHandle<()>> {
        let verifier = self.ctx.config.verifier.as_ref()?;
        Some(crate::auth::spawn_enforcer(
            verifier.directory(),
            self.ctx.registry.clone(),
            self.ctx.shutdown.clone(),
        ))
    }

    /// What the gateway announces and enforces.
    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.ctx.config
    }

    /// Removes tenants the control plane deleted from the broker, once
    /// their connections are gone.
    pub fn spawn_tenant_reaper(&self) -> Option<tokio::task::JoinHandle<()>> {
        let verifier = self.ctx.config.verifier.as_ref()?;
        Some(crate::reaper::spawn_reaper(
            verifier.directory().clone(),
            self.ctx.broker.clone(),
            self.ctx.registry.clone(),
            self.ctx.config.anonymous_tenant.clone(),
            self.ctx.shutdown.clone(),
        ))
    }

    /// Publishes each tenant's `$SYS` figures every `interval`.
    pub fn spawn_sys_publisher(
        &self,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::sys::spawn_sys_publisher(
            self.ctx.broker.clone(),
            self.ctx.registry.clone(),
            interval,
            self.ctx.shutdown.clone(),
        )
    }

    /// Tells every live connection to close for the shutdown. A live
    /// connection learns of the shutdown this way, through its session's
    /// wake-up, rather than by waiting on the token itself: a token's
    /// future would be 80 bytes in every connection's task. One registered
    /// after this looks at the token once, when its loop starts.
    fn close_connections(&self) {
        self.ctx
            .registry
            .kick_all(aerie_core::Kick::SERVER_SHUTTING_DOWN);
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.ctx.shutdown.clone()
    }

    /// Runs a connection on any byte stream, if a connection permit is free.
    pub fn spawn_connection<S>(&self, stream: S, transport: Transport)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(permit) = self.try_permit() {
            self.spawn_holding(stream, transport, None, permit)
        }
    }

    /// A connection permit, or `None` (counted) when all are taken.
    fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            metrics::counter!(aerie_core::metrics::CONNECT_REFUSED_TOTAL, "reason" => "max_connections").increment(1);
        }
        permit
    }

    /// Runs a connection that already holds its permit (taken at the accept,
    /// before any handshake) on any byte stream.
    pub(crate) fn spawn_holding<S>(
        &self,
        stream: S,
        transport: Transport,
        peer: Option<SocketAddr>,
        permit: OwnedSemaphorePermit,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let halves = tokio::io::split(stream);
        let connection = connection::run(halves, transport, peer, self.ctx.clone(), permit);
        self.spawn_traced(connection, transport, peer);
    }

    /// Plain TCP: the task owns the socket and splits it by reference
    /// (`connection::Duplex`).
    fn spawn_tcp(&self, socket: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let connection =
            connection::run(socket, Transport::Tcp, Some(peer), self.ctx.clone(), permit);
        self.spawn_traced(connection, Transport::Tcp, Some(peer));
    }

    /// Spawns a connection's task, tracked for shutdown, in an
    /// `mqtt.connection` span naming the peer; the connection adds its
    /// client id and tenant once CONNECT is accepted. The span is at DEBUG:
    /// a span costs about half a KiB for as long as it lives, which for an
    /// idle connection is most of what it holds, so it exists only when
    /// debug logs or trace export ask for it. The handshake has an INFO
    /// span of its own (`mqtt.connect`), freed after CONNACK.
    fn spawn_traced<F>(&self, connection: F, transport: Transport, peer: Option<SocketAddr>)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let span = tracing::debug_span!(
            "mqtt.connection",
            transport = transport.as_str(),
            peer = tracing::field::Empty,
            client_id = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        if let Some(peer) = peer {
            span.record("peer", tracing::field::display(peer));
        }
        // A disabled span is still 40 bytes in the task: left out.
        if span.is_disabled() {
            self.tracker.spawn(connection);
        } else {
            self.tracker.spawn(connection.instrument(span));
        }
    }

    /// Plain MQTT over TCP.
    pub async fn serve_tcp(self, listener: TcpListener) {
        self.accept_loop(listener, None).await
    }

    /// MQTT over TLS.
    pub async fn serve_tls(self, listener: TcpListener, acceptor: TlsAcceptor) {
        self.accept_loop(listener, Some(acceptor)).await
    }

    async fn accept_loop(self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.ctx.shutdown.cancelled() => return,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // The permit comes first: a TLS handshake holds one too, so
            // silent sockets cannot pile up beyond the limit.
            let Some(permit) = self.try_permit() else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            match &tls {
                None => self.spawn_tcp(socket, peer, permit),
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let gw = self.clone();
                    let timeout = self.ctx.config.handshake_timeout;
                    self.tracker.spawn(async move {
                        if let Some(stream) =
                            crate::tls::handshake(&acceptor, socket, timeout, "mqtts").await
                        {
                            gw.spawn_holding(stream, Transport::Tls, Some(peer), permit);
                        }
                    });
                }
            }
        }
    }

    /// MQTT over WebSocket (`tls: None`) or secure WebSocket at `path`: each
    /// accepted socket holds a connection permit from the accept (through
    /// the TLS handshake and the upgrade request, each within the handshake
    /// timeout) into the MQTT connection it becomes.
    pub fn serve_ws(
        self,
        listener: TcpListener,
        path: &str,
        tls: Option<TlsAcceptor>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (transport, name) = match tls {
            None => (Transport::Ws, "ws"),
            Some(_) => (Transport::Wss, "wss"),
        };
        let timeout = self.ctx.config.handshake_timeout;
        let edge = crate::edge::Edge {
            name,
            permits: self.permits.clone(),
            refused: metrics::counter!(aerie_core::metrics::CONNECT_REFUSED_TOTAL, "reason" => "max_connections"),
            tls: tls.map(|acceptor| (acceptor, timeout)),
            header_timeout: timeout,
            shutdown: self.ctx.shutdown.clone(),
        };
        let app = crate::ws::router(self, path, transport);
        crate::edge::serve(listener, app, edge)
    }

    /// Stops accepting, tells every connection to close (v5 clients get
    /// DISCONNECT 0x8B) and waits for them, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.ctx.shutdown.cancel();
        self.close_connections();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}
