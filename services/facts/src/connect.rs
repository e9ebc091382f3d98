//! The NATS connection of `aerie control` and `aerie gateway`: every server
//! URL given, credentials and TLS as configured, retried from the start (a
//! process may start before NATS does) and for ever after.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;

/// Messages NATS delivered that this process dropped because one of its
/// subscriptions' queues was full (async-nats's slow-consumer events, one
/// per dropped message when its event queue has room: at least this many).
pub const SLOW_CONSUMER_DROPS_TOTAL: &str = "aerie_nats_slow_consumer_drops_total";
/// 1 while connected to NATS, 0 while not (never connected yet, or
/// between a disconnect and the reconnect).
pub const NATS_CONNECTED: &str = "aerie_nats_connected";
/// A slow consumer is logged at most this often: every dropped message is
/// an event, and a flood would otherwise be a flood of log lines.
const SLOW_CONSUMER_LOG_EVERY_MS: u64 = 10_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counts a message async-nats dropped; logs it now and then.
fn slow_consumer(last_logged_ms: &AtomicU64, now_ms: u64) {
    metrics::counter!(SLOW_CONSUMER_DROPS_TOTAL).increment(1);
    let last = last_logged_ms.load(Ordering::Relaxed);
    if (last == 0 || now_ms.saturating_sub(last) >= SLOW_CONSUMER_LOG_EVERY_MS)
        && last_logged_ms
            .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            metric = SLOW_CONSUMER_DROPS_TOTAL,
            "NATS delivers faster than this process reads: messages dropped"
        );
    }
}

/// How to reach NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://…`); the client picks among them.
    pub urls: Vec<String>,
    /// A `.creds` file (user JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates (PEM) that sign the servers' certificates.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM), for servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// The connection's name in the server's monitoring.
    pub name: String,
    /// Copies JetStream keeps of each bucket and stream (`--nats-replicas`);
    /// None: one per server of the cluster, up to 3.
    pub replicas: Option<usize>,
}

/// A NATS client and how many times it has (re)connected.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    connects: Arc<AtomicU64>,
    /// Poked at each (re)connection.
    connected: Arc<tokio::sync::Notify>,
    /// `NatsConfig::replicas`.
    replicas: Option<usize>,
}

/// How long [`Nats::replicas`] waits for a connection.
const REPLICAS_WAIT: Duration = Duration::from_secs(5);

/// The longest wait between two connection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

impl Nats {
    /// Starts connecting; returns at once (the client connects in the
    /// background and reconnects whenever the connection drops).
    pub async fn connect(config: &NatsConfig) -> anyhow::Result<Nats> {
        anyhow::ensure!(!config.urls.is_empty(), "no NATS server URL (--nats)");
        let mut options = match &config.creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .with_context(|| {
                    format!(
                        "cannot read the NATS credentials {} (--nats-creds)",
                        path.display()
                    )
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let connects = Arc::new(AtomicU64::new(0));
        let connected = Arc::new(tokio::sync::Notify::new());
        let (counter, poke) = (connects.clone(), connected.clone());
        let slow_logged = Arc::new(AtomicU64::new(0));
        metrics::gauge!(NATS_CONNECTED).set(0.0);
        let options = options
            .name(&config.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            // A gateway started before NATS should be ready soon after it.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts as u64).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let (counter, poke) = (counter.clone(), poke.clone());
                let slow_logged = slow_logged.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            metrics::gauge!(NATS_CONNECTED).set(1.0);
                            poke.notify_one();
                            tracing::info!("connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            metrics::gauge!(NATS_CONNECTED).set(0.0);
                            tracing::warn!("disconnected from NATS");
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            slow_consumer(&slow_logged, unix_ms());
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
            });
        let client = options
            .connect(config.urls.as_slice())
            .await
            .context("cannot set up the NATS connection (--nats)")?;
        Ok(Nats {
            client,
            connects,
            connected,
            replicas: config.replicas,
        })
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Resolves at the next (re)connection (or at once if one happened
    /// since the last call). For one waiter.
    pub async fn reconnected(&self) {
        self.connected.notified().await;
    }

    /// How many times the client has connected (a change means a reconnect).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    /// Copies JetStream should keep of each bucket and stream
    /// (`aerie_cluster::replicas::wanted`). Without `--nats-replicas`, waits
    /// (a few seconds at most) until connected: the servers' INFO says how
    /// many there are.
    pub async fn replicas(&self) -> anyhow::Result<usize> {
        if self.replicas.is_none() {
            let connected = async {
                while !self.is_connected() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::time::timeout(REPLICAS_WAIT, connected)
                .await
                .map_err(|_| {
                    anyhow::anyhow!("not connected to NATS: its cluster's size is unknown")
                })?;
        }
        Ok(aerie_cluster::replicas::wanted(&self.client, self.replicas))
    }

    /// [`Nats::replicas`], asked again (with a warning each time) until
    /// NATS answers: for the start of a process that cannot run without it.
    pub async fn replicas_once_connected(&self) -> usize {
        loop {
            match self.replicas().await {
                Ok(n) => return n,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "waiting for NATS"),
            }
        }
    }

    pub fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dropped_message_counts_and_a_flood_logs_once_per_interval() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let last = AtomicU64::new(0);
        metrics::with_local_recorder(&recorder, || {
            for ms in [1_000, 1_001, 1_002] {
                slow_consumer(&last, ms);
            }
        });
        assert!(
            handle
                .render()
                .lines()
                .any(|l| l == format!("{SLOW_CONSUMER_DROPS_TOTAL} 3")),
            "{}",
            handle.render()
        );
        assert_eq!(last.load(Ordering::Relaxed), 1_000, "logged once");
        slow_consumer(&last, 1_000 + SLOW_CONSUMER_LOG_EVERY_MS);
        assert_eq!(last.load(Ordering::Relaxed), 11_000, "and again later");
    }
}
