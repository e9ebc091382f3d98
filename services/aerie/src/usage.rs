//! Usage reporting: every few seconds (and once more on shutdown) the
//! gateway's per-tenant counters are drained into rows of the current UTC
//! hour and handed to a [`UsageReporter`]: the control plane's `usage` table
//! in `aerie serve`, a JetStream stream in `aerie gateway`
//! (`usage_stream.rs`).

use std::time::Duration;

use aerie_control::AppState;
use aerie_control::store::{self, UsageRow};
use aerie_gateway::Gateway;
use tokio_util::sync::CancellationToken;

/// Where drained usage goes.
#[async_trait::async_trait]
pub trait UsageReporter: Send + Sync {
    /// Takes `rows`, or fails and leaves them to the caller (who puts the
    /// counters back for the next flush).
    async fn report(&self, rows: &[UsageRow]) -> anyhow::Result<()>;
}

/// `aerie serve`: straight into the control plane's store.
#[async_trait::async_trait]
impl UsageReporter for AppState {
    async fn report(&self, rows: &[UsageRow]) -> anyhow::Result<()> {
        Ok(self.store().add_usage(rows).await?)
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Drains the counters into `reporter`; when it fails they are put back for
/// the next flush.
pub async fn flush(gateway: &Gateway, reporter: &dyn UsageReporter) {
    let drained = gateway.drain_usage();
    if drained.is_empty() {
        return;
    }
    let hour = store::start_of_hour(store::now());
    let rows: Vec<UsageRow> = drained
        .iter()
        .map(|(tenant, c)| UsageRow {
            tenant_id: tenant.to_string(),
            hour,
            connection_seconds: as_i64(c.connection_seconds),
            messages_in: as_i64(c.messages_in),
            messages_out: as_i64(c.messages_out),
            bytes_in: as_i64(c.bytes_in),
            bytes_out: as_i64(c.bytes_out),
        })
        .collect();
    match reporter.report(&rows).await {
        Ok(()) => tracing::debug!(tenants = rows.len(), "usage reported"),
        Err(e) => {
            tracing::warn!(error = %e, tenants = rows.len(), "cannot write usage; kept for the next flush");
            for (tenant, counts) in drained {
                gateway.restore_usage(&tenant, counts);
            }
        }
    }
}

/// Flushes every `interval` until `shutdown` (the final flush is the caller's,
/// once the connections have closed).
pub async fn run(
    gateway: Gateway,
    reporter: std::sync::Arc<dyn UsageReporter>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&gateway, &*reporter).await,
            _ = shutdown.cancelled() => return,
        }
    }
}
