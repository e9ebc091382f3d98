//! `aerie gateway`: the MQTT listeners over the in-process core, in the
//! scale-out shape. The control plane's facts come from NATS KV
//! ([`KvDirectorySource`]); nothing is kept on disk (the core's store keeps
//! nothing: its durable ticket is the JetStream message log's, so a QoS 1/2
//! PUBLISH is acknowledged once JetStream kept it) and no database or REST
//! API is called, so killing a gateway loses only its live connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aerie_cluster::backbone::NatsBackbone;
use aerie_cluster::message_log::{JetStreamLog, LogConfig, Retention};
use aerie_cluster::retained::JetStreamRetainedStores;
use aerie_cluster::session_records::KvSessionRecords;
use aerie_cluster::survivors::Survivors;
use aerie_cluster::wills::KvWills;
use aerie_control::readiness_log::ReadinessLog;
use aerie_core::{Broker, NodeId, Seams};
use aerie_facts::{KvDirectorySource, Nats};
use aerie_gateway::auth::{Directory, DirectoryCache};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::cli::GatewayArgs;
use crate::node::{Listeners, bind, housekeeping, shutdown_signal, start_gateway};
use crate::usage_stream::UsageStream;

/// How long a CONNECT of a tenant the facts do not have yet waits for them.
const UNKNOWN_TENANT_WAIT: Duration = Duration::from_secs(1);
/// How much longer than `--store-ack-timeout` the message log retries an
/// append before it gives up on it.
const LOG_GIVE_UP_MARGIN: Duration = Duration::from_secs(2);

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.nats.nats.is_empty(),
        "aerie gateway needs --nats URL: the NATS servers `aerie control --nats` publishes to"
    );
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("gw-{:08x}", rand::random::<u32>()));
    crate::node::raise_nofile_limit();
    let signal = shutdown_signal()?;
    tokio::pin!(signal);
    let metrics = crate::telemetry::init_metrics()?;
    // Bind everything first, so a taken port fails before anything starts.
    let listeners = Listeners::bind(&args.listen).await?;
    let http = bind(args.http, "--http").await?;

    let nats = Nats::connect(&args.nats.config(format!("aerie-gateway-{node_id}"))?).await?;
    let shutdown = CancellationToken::new();
    let source = KvDirectorySource::spawn(nats.clone(), &args.nats.nats_prefix, shutdown.clone());
    // HTTP first: /readyz says what is missing while NATS or the facts are.
    tracing::info!(addr = %http.local_addr()?, %node_id, "HTTP listening (/healthz, /readyz, /metrics)");
    let serving = Arc::new(AtomicBool::new(false));
    crate::http::spawn(
        http,
        probes(source.clone(), serving.clone()),
        metrics.clone(),
        &args.http_edge,
        shutdown.clone(),
    );

    // Tokens name the control plane's `iss`, which the facts carry: MQTT is
    // served once they have arrived (clients wait in the accept queue).
    let issuer = tokio::select! {
        issuer = source.wait_for_issuer() => issuer,
        () = &mut signal => {
            shutdown.cancel();
            return Ok(());
        }
    };
    let directory = Arc::new(DirectoryCache::new(source.clone(), Directory::default()));
    directory.refresh().await?;
    // Each change of the facts reaches the directory (and so the enforcer
    // and the limits) as soon as NATS delivers it. The periodic refresh,
    // from memory, adds nothing but a period: a token of a tenant not in
    // the directory yet (created a moment ago) waits that long for it.
    source.spawn_push(&directory);
    directory.spawn_refresh(UNKNOWN_TENANT_WAIT);
    let node = node_id_of(&node_id);
    let prefix = &args.nats.nats_prefix;
    let (backbone, inbound) =
        NatsBackbone::start(nats.client.clone(), prefix, node, shutdown.clone());
    // Session ownership and tenant connection counts across gateways.
    let incarnation = aerie_cluster::nodes::incarnation(&node_id);
    let js = nats.jetstream();
    // NATS was connected (the facts came through it): its INFO names the
    // cluster's servers. Asked again while it is away.
    let replicas = nats.replicas_once_connected().await;
    let (nodes, owners, records, wills) = tokio::join!(
        aerie_cluster::Nodes::open(&js, prefix, incarnation.clone(), replicas),
        aerie_cluster::NatsOwners::open(nats.client.clone(), prefix, incarnation.clone(), replicas),
        // Persistent sessions, so they resume on any gateway.
        KvSessionRecords::open(nats.client.clone(), prefix, replicas, shutdown.clone()),
        // Wills, so a survivor publishes them if this gateway dies.
        KvWills::open(&js, prefix, incarnation.clone(), replicas),
    );
    nodes.spawn_heartbeat(shutdown.clone()).await;
    owners.spawn_sweep(nodes.clone(), shutdown.clone());
    let survivor_nodes = nodes.clone();
    let connections = aerie_cluster::ClusterConnections::open(&js, prefix, nodes, replicas).await;
    let store_ack_timeout = Duration::from_secs(args.mqtt.store_ack_timeout);
    let log = JetStreamLog::start(
        nats.client.clone(),
        LogConfig {
            prefix: prefix.clone(),
            replicas: args.nats.nats_replicas.map(usize::from),
            retention: Retention {
                max_age: Duration::from_secs(args.message_log_max_age),
                max_bytes: args.message_log_max_bytes,
            },
            // Past the connections' wait for an ack: a given-up append's
            // ack was refused first.
            give_up_after: store_ack_timeout + LOG_GIVE_UP_MARGIN,
        },
        shutdown.clone(),
    );
    let seams = Seams {
        backbone,
        retained: Arc::new(JetStreamRetainedStores::new(
            nats.client.clone(),
            prefix,
            replicas,
        )),
        owners: Arc::new(owners.clone()),
        log: log.clone(),
        records,
        wills: wills.clone(),
    };
    let config = aerie_core::CoreConfig {
        node_id: node,
        ..crate::node::core_config(&args.mqtt)
    };
    let broker = Broker::with_seams(config, log.acks(), seams);
    inbound.spawn(broker.clone());
    // This node publishes the wills, and expires the sessions, of gateways
    // that die.
    Survivors::open(
        &js,
        prefix,
        survivor_nodes,
        &owners,
        &wills,
        broker.clone(),
        replicas,
    )
    .await
    .spawn(shutdown.clone());
    let counter = nats.clone();
    owners
        .serve(broker.clone(), shutdown.clone(), move || counter.connects())
        .await?;
    connections.spawn_upkeep(broker.clone(), shutdown.clone());
    let gateway = start_gateway(
        broker,
        directory,
        &issuer,
        &args.mqtt,
        Arc::new(connections),
    );
    // The control plane's live-state routes ask this node through NATS.
    aerie_cluster::live::serve(
        nats.client.clone(),
        prefix,
        &incarnation,
        Arc::new(crate::broker_port::InProcessBroker::new(gateway.clone())),
        gateway.broker().clone(),
        shutdown.clone(),
    )
    .await?;
    listeners.serve(&gateway)?;
    serving.store(true, Ordering::Relaxed);
    tokio::spawn(housekeeping(gateway.broker().clone(), metrics));
    let usage = UsageStream::new(nats, &args.nats.nats_prefix, &node_id);
    tokio::spawn(crate::usage::run(
        gateway.clone(),
        Arc::new(usage.clone()),
        Duration::from_secs(args.usage_report_interval),
        gateway.shutdown_token(),
    ));

    signal.await;
    tracing::info!("shutting down");
    gateway.shutdown(Duration::from_secs(5)).await;
    // The closing connections' wills were discarded (no will at a
    // shutdown): gone from the bucket before this node stops saying it is
    // alive, or survivors would publish them.
    wills.flush().await;
    // The connections are closed: their last connection time is in the counters.
    crate::usage::flush(&gateway, &usage).await;
    shutdown.cancel();
    Ok(())
}

/// The core's node id for `--node-id`: its FNV-1a hash, so the same name
/// is the same node after a restart and two names practically never collide.
fn node_id_of(name: &str) -> NodeId {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // 0 is the id of messages stored before nodes had ids.
    NodeId(hash.max(1))
}

/// `/healthz` (the process answers) and `/readyz` (NATS connected, the
/// control plane's facts held and MQTT served; else 503 with the reason).
fn probes(source: Arc<KvDirectorySource>, serving: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state((source, serving))
}

async fn readyz(
    State((source, serving)): State<(Arc<KvDirectorySource>, Arc<AtomicBool>)>,
) -> Result<&'static str, aerie_control::error::ApiError> {
    static CHANGES: ReadinessLog = ReadinessLog::new();
    let ready = source.readiness().and_then(|()| {
        // The listeners are bound from the start; clients wait in their
        // accept queue until the gateway serves them.
        match serving.load(Ordering::Relaxed) {
            true => Ok(()),
            false => Err("MQTT is not served yet (opening the cluster's KV buckets)"),
        }
    });
    CHANGES.observe(ready);
    ready
        .map(|()| "ready\n")
        .map_err(|why| aerie_control::error::ApiError::Unavailable(why.into()))
}
