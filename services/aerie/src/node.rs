//! What `aerie serve` and `aerie gateway` share: the MQTT listeners, the
//! gateway over the in-process core with its verifier, enforcement, limits
//! and reaper, and the process plumbing (binding, signals, upkeep).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::{Broker, CoreConfig};
use aerie_gateway::auth::{DirectoryCache, Verifier};
use aerie_gateway::{Gateway, GatewayConfig};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cli::{ListenArgs, MqttArgs};

/// Binds `addr`, or fails with one line naming the flag that changes it.
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("{addr} is already in use; choose another address with {flag}")
        } else {
            anyhow::anyhow!("cannot listen on {addr} ({flag}): {e}")
        }
    })
}

/// One descriptor per connection: the default soft limit (often 1024) would
/// refuse clients long before memory runs out.
pub fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "RLIMIT_NOFILE raised"),
        Err(e) => tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE"),
    }
}

/// The MQTT listeners, bound (so a taken port fails before anything starts).
pub struct Listeners {
    mqtt: TcpListener,
    ws: TcpListener,
    ws_path: String,
    /// MQTTS and WSS, with their acceptors, when a certificate is given.
    tls: Option<(TcpListener, TcpListener, TlsAcceptor, TlsAcceptor)>,
}

impl Listeners {
    pub async fn bind(args: &ListenArgs) -> anyhow::Result<Listeners> {
        let mqtt = bind(args.mqtt, "--mqtt").await?;
        let ws = bind(args.ws, "--ws").await?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some((
                bind(args.mqtts, "--mqtts").await?,
                bind(args.wss, "--wss").await?,
                aerie_gateway::tls::acceptor(cert, key, &[])?,
                aerie_gateway::tls::acceptor(cert, key, &[b"http/1.1"])?,
            )),
            _ => None,
        };
        Ok(Listeners {
            mqtt,
            ws,
            ws_path: args.ws_path.clone(),
            tls,
        })
    }

    /// Serves every listener with `gateway` until it shuts down.
    pub fn serve(self, gateway: &Gateway) -> anyhow::Result<()> {
        let path = &self.ws_path;
        tracing::info!(addr = %self.mqtt.local_addr()?, "MQTT listening");
        tokio::spawn(gateway.clone().serve_tcp(self.mqtt));
        tracing::info!(addr = %self.ws.local_addr()?, %path, "MQTT over WebSocket listening");
        tokio::spawn(gateway.clone().serve_ws(self.ws, path, None));
        if let Some((mqtts, wss, mqtts_acceptor, wss_acceptor)) = self.tls {
            tracing::info!(addr = %mqtts.local_addr()?, "MQTT over TLS listening");
            tokio::spawn(gateway.clone().serve_tls(mqtts, mqtts_acceptor));
            tracing::info!(addr = %wss.local_addr()?, %path, "MQTT over secure WebSocket listening");
            tokio::spawn(gateway.clone().serve_ws(wss, path, Some(wss_acceptor)));
        }
        Ok(())
    }
}

/// The core's bounds from the flags.
pub fn core_config(args: &MqttArgs) -> CoreConfig {
    CoreConfig {
        max_queued_messages: args.max_queued_messages,
        max_session_expiry: args.max_session_expiry,
        ..CoreConfig::default()
    }
}

/// The gateway over `broker`, verifying tokens of `issuer` (and tenants'
/// issuers) against `directory`, with what follows the directory running:
/// tenant limits, the enforcer that closes what a new snapshot no longer
/// allows, the reaper of deleted tenants, and `$SYS` figures.
pub fn start_gateway(
    broker: Broker,
    directory: Arc<DirectoryCache>,
    issuer: &str,
    args: &MqttArgs,
    connections: Arc<dyn aerie_core::quota::TenantConnections>,
) -> Gateway {
    aerie_core::metrics::register_zeroes();
    // Tenant limits follow the directory: a change reaches live connections
    // with the next snapshot.
    aerie_gateway::limits::spawn_apply(broker.clone(), &directory);
    let verifier = Arc::new(Verifier::new(issuer, directory));
    let gateway = Gateway::new(
        broker,
        GatewayConfig {
            allow_anonymous: args.allow_anonymous,
            verifier: Some(verifier),
            max_packet_size: args.max_packet_size,
            max_keep_alive: args.max_keep_alive,
            receive_maximum: args.receive_maximum,
            max_inflight: args.max_inflight,
            store_ack_timeout: Duration::from_secs(args.store_ack_timeout),
            max_connections: args.max_connections as usize,
            handshake_timeout: Duration::from_secs(args.handshake_timeout),
            slow_consumer_timeout: (args.slow_consumer_timeout > 0)
                .then(|| Duration::from_secs(args.slow_consumer_timeout)),
            connections,
            ..GatewayConfig::default()
        },
    );
    // ... and the same snapshot closes live connections it no longer allows.
    gateway.spawn_enforcer();
    // A deleted tenant's sessions, queues and retained messages go too.
    gateway.spawn_tenant_reaper();
    if args.sys_interval > 0 {
        gateway.spawn_sys_publisher(Duration::from_secs(args.sys_interval));
    }
    if args.allow_anonymous {
        tracing::warn!("anonymous clients are allowed (--allow-anonymous): for development only");
    }
    gateway
}

/// Periodic upkeep: histogram buckets of the exporter and timer-based gauges.
pub async fn housekeeping(broker: Broker, metrics: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        metrics.run_upkeep();
        broker.refresh_gauges();
    }
}

/// Installs the SIGTERM/SIGINT handlers now (before anything listens, so a
/// signal that arrives during start-up is not fatal) and returns a future that
/// resolves on the first of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
