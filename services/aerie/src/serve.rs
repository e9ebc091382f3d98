//! `aerie serve`: every listener of the embedded shape in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aerie_control::api::admin::AdminToken;
use aerie_control::keys::Kek;
use aerie_control::{AppState, Endpoints};
use aerie_core::{Broker, CoreConfig};
use aerie_gateway::auth::{DirectoryCache, Verifier};
use aerie_gateway::{Gateway, GatewayConfig};
use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::{AuthRateArgs, ControlArgs, KeysArgs, ServeArgs, ShownArgs, embedded_control_db};
use crate::directory::ControlDirectory;

/// How long shutdown waits for the store's last writes.
const SHUTDOWN_SYNC: Duration = Duration::from_secs(10);
/// How often the gateway reloads its token directory from the control plane.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(1);

/// Binds `addr`, or fails with one line naming the flag that changes it.
async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("{addr} is already in use; choose another address with {flag}")
        } else {
            anyhow::anyhow!("cannot listen on {addr} ({flag}): {e}")
        }
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let admin_token = args.admin.resolve()?;
    // One descriptor per connection: the default soft limit (often 1024) would
    // refuse clients long before memory runs out.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "RLIMIT_NOFILE raised"),
        Err(e) => tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE"),
    }
    let signal = shutdown_signal()?;
    let metrics = crate::telemetry::init_metrics()?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create data dir {} (--data-dir)",
            args.data_dir.display()
        )
    })?;

    let core = CoreConfig {
        max_queued_messages: args.max_queued_messages,
        max_session_expiry: args.max_session_expiry,
        ..CoreConfig::default()
    };

    // Bind everything first, so a taken port fails before anything starts.
    let mqtt = bind(args.mqtt, "--mqtt").await?;
    let ws = bind(args.ws, "--ws").await?;
    let http = bind(args.http, "--http").await?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((
            bind(args.mqtts, "--mqtts").await?,
            bind(args.wss, "--wss").await?,
            aerie_gateway::tls::acceptor(cert, key, &[])?,
            aerie_gateway::tls::acceptor(cert, key, &[b"http/1.1"])?,
        )),
        _ => None,
    };

    let secret_key = args
        .secret
        .resolve(Some(&args.data_dir.join("secret.key")))?;
    let control = open_control(
        args.database_url
            .clone()
            .unwrap_or_else(|| embedded_control_db(&args.data_dir, "rwc")),
        args.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.http)),
        secret_key,
        public_endpoints(&args),
        &args.auth_rate,
        admin_token,
        args.shown.console_dir.clone(),
    )
    .await?;

    let store = aerie_store::FjallStore::open(&args.data_dir.join("store")).with_context(|| {
        format!(
            "cannot open the store in {} (--data-dir)",
            args.data_dir.display()
        )
    })?;
    store.set_backlog_pause_bytes(args.store_backlog_bytes);
    let loaded = store.load()?;
    let (sessions, retained) = (loaded.sessions.len(), loaded.retained.len());
    let broker = Broker::with_store(core, store.clone());
    broker.restore(loaded);
    tracing::info!(sessions, retained, data_dir = %args.data_dir.display(), "store loaded");
    // Tokens are verified against a snapshot of the control plane's keys,
    // revocations and tenant statuses, reloaded every second: a revocation
    // or suspension applies to new connections within about a second...
    // ... while tenants' JWKS URLs are fetched apart, each on its own schedule.
    let egress = aerie_egress::Egress::new(aerie_egress::DestinationPolicy {
        allow_private: args.allow_private_destinations,
    });
    let directory = DirectoryCache::load(Arc::new(ControlDirectory::new(control.clone(), egress)))
        .await
        .context("cannot load the token directory")?;
    directory.spawn_refresh(DIRECTORY_REFRESH);
    // Tenant limits follow the directory: a change reaches live connections
    // with the next refresh.
    aerie_gateway::limits::spawn_apply(broker.clone(), &directory);
    let verifier = Arc::new(Verifier::new(control.issuer(), directory));
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
            ..GatewayConfig::default()
        },
    );
    let shutdown = gateway.shutdown_token();
    // ... and the same snapshot closes live connections it no longer allows.
    gateway.spawn_enforcer();
    // A deleted tenant's sessions, queues and retained messages go too.
    gateway.spawn_tenant_reaper();
    if args.sys_interval > 0 {
        gateway.spawn_sys_publisher(Duration::from_secs(args.sys_interval));
    }

    tracing::info!(addr = %mqtt.local_addr()?, "MQTT listening");
    tokio::spawn(gateway.clone().serve_tcp(mqtt));
    tracing::info!(addr = %ws.local_addr()?, path = %args.ws_path, "MQTT over WebSocket listening");
    tokio::spawn(gateway.clone().serve_ws(ws, &args.ws_path, None));
    if let Some((mqtts, wss, mqtts_acceptor, wss_acceptor)) = tls {
        tracing::info!(addr = %mqtts.local_addr()?, "MQTT over TLS listening");
        tokio::spawn(gateway.clone().serve_tls(mqtts, mqtts_acceptor));
        tracing::info!(addr = %wss.local_addr()?, path = %args.ws_path, "MQTT over secure WebSocket listening");
        tokio::spawn(
            gateway
                .clone()
                .serve_ws(wss, &args.ws_path, Some(wss_acceptor)),
        );
    }
    tokio::spawn(housekeeping(gateway.broker().clone(), metrics.clone()));
    let usage_flush = Duration::from_secs(args.usage_flush_interval);
    tokio::spawn(crate::usage::run(
        gateway.clone(),
        control.clone(),
        usage_flush,
        shutdown.clone(),
    ));
    let control = control.with_broker(Arc::new(crate::broker_port::InProcessBroker::new(
        gateway.clone(),
    )));
    let http_addr = http.local_addr()?;
    tracing::info!(addr = %http_addr, "HTTP listening (console /, /v1, /healthz, /readyz, /metrics)");
    let app = crate::http::router(
        aerie_control::app(control.clone()),
        metrics,
        Duration::from_secs(args.http_edge.http_request_timeout),
    );
    tokio::spawn(crate::http::serve(
        http,
        app,
        args.http_edge.clone(),
        shutdown.clone(),
    ));
    announce_control_plane(http_addr);
    if args.allow_anonymous {
        tracing::warn!("anonymous clients are allowed (--allow-anonymous): for development only");
    }

    signal.await;
    tracing::info!("shutting down");
    gateway.shutdown(Duration::from_secs(5)).await;
    // The connections are closed: their last connection time is in the counters.
    crate::usage::flush(&gateway, &control).await;
    // A failing disk must not hold the process: what is not durable by
    // then was never acknowledged.
    if tokio::time::timeout(SHUTDOWN_SYNC, store.sync())
        .await
        .is_err()
    {
        tracing::error!(
            "the store did not make every write durable before shutdown (a failing disk?)"
        );
    }
    store.close();
    Ok(())
}

/// Opens the control-plane database (applying its migrations) and its state.
/// Where tenants connect: each `--public-*` address given, else `default`'s.
fn shown_endpoints(given: &ShownArgs, default: Endpoints) -> Endpoints {
    let pick = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
    Endpoints {
        mqtt: pick(&given.public_mqtt, default.mqtt),
        mqtts: pick(&given.public_mqtts, default.mqtts),
        ws: pick(&given.public_ws, default.ws),
        wss: pick(&given.public_wss, default.wss),
    }
}

/// `aerie serve` shows its listen addresses unless told otherwise. One on an
/// unspecified address (0.0.0.0, ::) cannot be connected to as shown, so
/// that gets a warning naming the flag.
fn public_endpoints(args: &ServeArgs) -> Endpoints {
    let shown = shown_endpoints(
        &args.shown,
        Endpoints {
            mqtt: format!("mqtt://{}", args.mqtt),
            mqtts: format!("mqtts://{}", args.mqtts),
            ws: format!("ws://{}{}", args.ws, args.ws_path),
            wss: format!("wss://{}{}", args.wss, args.ws_path),
        },
    );
    for (url, flag) in [
        (&shown.mqtt, "--public-mqtt"),
        (&shown.mqtts, "--public-mqtts"),
        (&shown.ws, "--public-ws"),
        (&shown.wss, "--public-wss"),
    ] {
        if url.contains("://0.0.0.0") || url.contains("://[::]") {
            tracing::warn!(%url, "tenants are shown an address clients cannot reach; set {flag}");
        }
    }
    shown
}

async fn open_control(
    database_url: String,
    issuer: String,
    secret_key: Kek,
    endpoints: Endpoints,
    auth_rate: &AuthRateArgs,
    admin_token: Option<AdminToken>,
    console_dir: std::path::PathBuf,
) -> anyhow::Result<AppState> {
    let shown = redact(&database_url);
    if admin_token.is_some() {
        tracing::info!("admin routes (/v1/admin) enabled");
    }
    let mut config = aerie_control::Config::new(endpoints, issuer, secret_key);
    (config.auth_rate_per_ip, config.auth_backoff_per_email) = auth_rate.limits();
    config.admin_token = admin_token;
    config.console_dir = Some(console_dir);
    let state = AppState::open(&database_url, config)
        .await
        .with_context(|| {
            format!("cannot open the control-plane database {shown} (--database-url)")
        })?;
    tracing::info!(database = %shown, "control-plane database ready");
    Ok(state)
}

/// A database URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Tells whoever started the process where the API is and how to begin.
fn announce_control_plane(addr: SocketAddr) {
    tracing::info!(
        "control plane: http://{addr}/v1 — create an account: curl -X POST http://{addr}/v1/accounts \
         -H 'content-type: application/json' -d '{{\"email\":\"you@example.com\",\"password\":\"at least 10 chars\"}}' \
         (README: \"Control plane API\")"
    );
}

/// `aerie control`: the control plane alone, for the scale-out shape.
pub async fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    let admin_token = args.admin.resolve()?;
    let signal = shutdown_signal()?;
    let metrics = crate::telemetry::init_metrics()?;
    let http = bind(args.http, "--http").await?;
    let secret_key = args.secret.resolve(None)?;
    let control = open_control(
        args.database_url,
        args.issuer
            .unwrap_or_else(|| format!("http://{}", args.http)),
        secret_key,
        shown_endpoints(
            &args.shown,
            Endpoints {
                mqtt: "mqtt://127.0.0.1:1883".into(),
                mqtts: "mqtts://127.0.0.1:8883".into(),
                ws: "ws://127.0.0.1:8083/mqtt".into(),
                wss: "wss://127.0.0.1:8084/mqtt".into(),
            },
        ),
        &args.auth_rate,
        admin_token,
        args.shown.console_dir,
    )
    .await?;
    let addr = http.local_addr()?;
    tracing::info!(%addr, "HTTP listening (console /, /v1, /healthz, /readyz, /metrics)");
    announce_control_plane(addr);
    let app = crate::http::router(
        aerie_control::app(control),
        metrics,
        Duration::from_secs(args.http_edge.http_request_timeout),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(crate::http::serve(
        http,
        app,
        args.http_edge.clone(),
        shutdown.clone(),
    ));
    signal.await;
    shutdown.cancel();
    let _ = serving.await;
    Ok(())
}

/// Periodic upkeep: histogram buckets of the exporter and timer-based gauges.
async fn housekeeping(broker: Broker, metrics: metrics_exporter_prometheus::PrometheusHandle) {
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
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
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

/// `aerie keys rotate`: a new active signing key; the old one keeps verifying.
pub async fn rotate_keys(args: KeysArgs) -> anyhow::Result<()> {
    let secret_key = crate::cmd::existing_secret_key(&args.db, &args.secret)?;
    let store = crate::cmd::open_store(&args.db).await?;
    let kid = aerie_control::keys::rotate_signing_key(&*store, &secret_key).await?;
    println!("new signing key: {kid}");
    Ok(())
}
