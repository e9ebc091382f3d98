//! `aerie serve`: every listener of the embedded shape in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aerie_control::api::admin::AdminToken;
use aerie_control::keys::Kek;
use aerie_control::{AppState, Endpoints};
use aerie_core::Broker;
use aerie_facts::{ControlFacts, JwksUrls};
use aerie_gateway::auth::DirectoryCache;
use anyhow::Context;

use crate::cli::{AuthRateArgs, ControlArgs, KeysArgs, ServeArgs, ShownArgs, embedded_control_db};
use crate::node::{Listeners, bind, housekeeping, shutdown_signal, start_gateway};

/// How long shutdown waits for the store's last writes.
const SHUTDOWN_SYNC: Duration = Duration::from_secs(10);
/// How often the gateway reloads its token directory from the control plane.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(1);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let admin_token = args.admin.resolve()?;
    let bootstrap = args.bootstrap.resolve()?;
    crate::node::raise_nofile_limit();
    let signal = shutdown_signal()?;
    let metrics = crate::telemetry::init_metrics()?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create data dir {} (--data-dir)",
            args.data_dir.display()
        )
    })?;

    // Bind everything first, so a taken port fails before anything starts.
    let listeners = Listeners::bind(&args.listen).await?;
    let http = bind(args.http, "--http").await?;

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

    if let Some((email, key)) = bootstrap {
        aerie_control::bootstrap::bootstrap_account(control.store(), &email, &key)
            .await
            .context("--bootstrap-account")?;
    }

    let store = aerie_store::FjallStore::open(&args.data_dir.join("store")).with_context(|| {
        format!(
            "cannot open the store in {} (--data-dir)",
            args.data_dir.display()
        )
    })?;
    store.set_backlog_pause_bytes(args.store_backlog_bytes);
    let loaded = store.load()?;
    let (sessions, retained) = (loaded.sessions.len(), loaded.retained.len());
    let broker = Broker::with_store(crate::node::core_config(&args.mqtt), store.clone());
    broker.restore(loaded);
    tracing::info!(sessions, retained, data_dir = %args.data_dir.display(), "store loaded");
    // Tokens are verified against a snapshot of the control plane's keys,
    // revocations and tenant statuses, reloaded every second: a revocation
    // or suspension applies to new connections within about a second...
    // ... while tenants' JWKS URLs are fetched apart, each on its own schedule.
    let egress = aerie_egress::Egress::new(aerie_egress::DestinationPolicy {
        allow_private: args.allow_private_destinations,
    });
    let facts = ControlFacts::new(control.clone(), JwksUrls::new(egress));
    let directory = DirectoryCache::load(Arc::new(facts))
        .await
        .context("cannot load the token directory")?;
    directory.spawn_refresh(DIRECTORY_REFRESH);
    let gateway = start_gateway(
        broker,
        directory,
        control.issuer(),
        &args.mqtt,
        Arc::new(aerie_core::quota::LocalConnections),
    );
    let shutdown = gateway.shutdown_token();
    listeners.serve(&gateway)?;
    tokio::spawn(housekeeping(gateway.broker().clone(), metrics.clone()));
    let usage_flush = Duration::from_secs(args.usage_flush_interval);
    tokio::spawn(crate::usage::run(
        gateway.clone(),
        Arc::new(crate::usage::ControlStoreUsage(control.clone())),
        usage_flush,
        shutdown.clone(),
    ));
    let control = control.with_broker(Arc::new(crate::broker_port::InProcessBroker::new(
        gateway.clone(),
    )));
    let http_addr = http.local_addr()?;
    tracing::info!(addr = %http_addr, "HTTP listening (console /, /v1, /healthz, /readyz, /metrics)");
    crate::http::spawn(
        http,
        aerie_control::app(control.clone()),
        metrics,
        &args.http_edge,
        shutdown.clone(),
    );
    announce_control_plane(http_addr);

    signal.await;
    tracing::info!("shutting down");
    gateway.shutdown(Duration::from_secs(5)).await;
    // The connections are closed: their last connection time is in the counters.
    crate::usage::flush(&gateway, &crate::usage::ControlStoreUsage(control.clone())).await;
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

/// Where tenants connect: each `--public-*` address given, else `default`'s
/// (whose TLS endpoints are `None` when no TLS listener is served).
fn shown_endpoints(given: &ShownArgs, default: Endpoints) -> Endpoints {
    let pick = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
    let pick_tls = |given: &Option<String>, default: Option<String>| given.clone().or(default);
    Endpoints {
        mqtt: pick(&given.public_mqtt, default.mqtt),
        mqtts: pick_tls(&given.public_mqtts, default.mqtts),
        ws: pick(&given.public_ws, default.ws),
        wss: pick_tls(&given.public_wss, default.wss),
    }
}

/// `aerie serve` shows its listen addresses unless told otherwise, and its
/// TLS ones only when it serves TLS (`--tls-cert`). One on an unspecified
/// address (0.0.0.0, ::) cannot be connected to as shown, so that gets a
/// warning naming the flag.
fn public_endpoints(args: &ServeArgs) -> Endpoints {
    let tls = args.listen.tls_cert.is_some();
    let shown = shown_endpoints(
        &args.shown,
        Endpoints {
            mqtt: format!("mqtt://{}", args.listen.mqtt),
            mqtts: tls.then(|| format!("mqtts://{}", args.listen.mqtts)),
            ws: format!("ws://{}{}", args.listen.ws, args.listen.ws_path),
            wss: tls.then(|| format!("wss://{}{}", args.listen.wss, args.listen.ws_path)),
        },
    );
    for (url, flag) in [
        (Some(&shown.mqtt), "--public-mqtt"),
        (shown.mqtts.as_ref(), "--public-mqtts"),
        (Some(&shown.ws), "--public-ws"),
        (shown.wss.as_ref(), "--public-wss"),
    ] {
        let Some(url) = url else { continue };
        if url.contains("://0.0.0.0") || url.contains("://[::]") {
            tracing::warn!(%url, "tenants are shown an address clients cannot reach; set {flag}");
        }
    }
    shown
}

/// Opens the control-plane database (applying its migrations) and its state.
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
pub async fn run_control(args: Box<ControlArgs>) -> anyhow::Result<()> {
    let admin_token = args.admin.resolve()?;
    let signal = shutdown_signal()?;
    let metrics = crate::telemetry::init_metrics()?;
    let http = bind(args.http, "--http").await?;
    let secret_key = args.secret.resolve(None)?;
    let control = open_control(
        args.database_url.clone(),
        args.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.http)),
        secret_key,
        shown_endpoints(
            &args.shown,
            // The gateways' TLS is theirs to know: TLS endpoints are shown
            // only when named (--public-mqtts, --public-wss).
            Endpoints {
                mqtt: "mqtt://127.0.0.1:1883".into(),
                mqtts: None,
                ws: "ws://127.0.0.1:8083/mqtt".into(),
                wss: None,
            },
        ),
        &args.auth_rate,
        admin_token,
        args.shown.console_dir.clone(),
    )
    .await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let api = if args.nats.nats.is_empty() {
        aerie_control::app(control)
    } else {
        let nats = aerie_facts::Nats::connect(&args.nats.config("aerie-control".into())?).await?;
        // The live-state routes ask the gateways (`/readyz` does not).
        let control = control.with_broker(Arc::new(aerie_cluster::live::ClusterBroker::new(
            nats.client.clone(),
            &args.nats.nats_prefix,
            nats.replicas_once_connected().await,
        )));
        let api = aerie_control::app(control.clone());
        publish_facts(&args, nats, control, api, shutdown.clone())
    };
    let addr = http.local_addr()?;
    tracing::info!(%addr, "HTTP listening (console /, /v1, /healthz, /readyz, /metrics)");
    announce_control_plane(addr);
    let serving = crate::http::spawn(http, api, metrics, &args.http_edge, shutdown.clone());
    signal.await;
    shutdown.cancel();
    let _ = serving.await;
    Ok(())
}

/// `aerie control --nats`: publishes the facts the gateways need, at once
/// after every API request that may have changed them (the returned router
/// pokes the publisher) and every few seconds; folds the gateways' usage
/// reports into the `usage` table.
fn publish_facts(
    args: &ControlArgs,
    nats: aerie_facts::Nats,
    control: AppState,
    api: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> axum::Router {
    let poke = Arc::new(tokio::sync::Notify::new());
    // Tenants' JWKS URLs are fetched here, so gateways never call out.
    let egress = aerie_egress::Egress::new(aerie_egress::DestinationPolicy {
        allow_private: args.allow_private_destinations,
    });
    // The gateways' usage comes back the same way.
    crate::usage_stream::spawn_folder(
        nats.clone(),
        args.nats.nats_prefix.clone(),
        control.clone(),
        shutdown.clone(),
    );
    let facts = ControlFacts::new(control, JwksUrls::new(egress).notifying(poke.clone()));
    aerie_facts::FactsPublisher::new(nats, &args.nats.nats_prefix, Arc::new(facts), poke.clone())
        .spawn(shutdown);
    tracing::info!(servers = ?args.nats.nats, prefix = %args.nats.nats_prefix, "publishing the facts to NATS");
    crate::http::notify_after_writes(api, poke)
}

/// `aerie keys rotate`: a new active signing key; the old one keeps verifying.
pub async fn rotate_keys(args: KeysArgs) -> anyhow::Result<()> {
    let secret_key = crate::cmd::existing_secret_key(&args.db, &args.secret)?;
    let store = crate::cmd::open_store(&args.db).await?;
    let kid = aerie_control::keys::rotate_signing_key(&*store, &secret_key).await?;
    println!("new signing key: {kid}");
    Ok(())
}
