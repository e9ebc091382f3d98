//! Usage reporting: every few seconds (and once more on shutdown) the
//! gateway's per-tenant counters are drained into rows of the current UTC
//! hour and handed to a [`UsageSink`]: the control plane's `usage` table
//! in `aerie serve`, a JetStream stream in `aerie gateway`
//! (`usage_stream.rs`).

use std::sync::Arc;
use std::time::Duration;

use aerie_control::AppState;
use aerie_control::store::{self, UsageRow};
use aerie_core::seams::BoxFuture;
use aerie_core::{UsageCounts, UsageReportError, UsageSink};
use aerie_gateway::Gateway;
use tokio_util::sync::CancellationToken;

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Usage counts as rows of the current UTC hour.
pub fn rows(counts: &[(Arc<str>, UsageCounts)]) -> Vec<UsageRow> {
    let hour = store::start_of_hour(store::now());
    counts
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
        .collect()
}

/// `aerie serve`'s usage sink: the counts are added to the control plane's
/// `usage` rows of the current UTC hour.
pub struct ControlStoreUsage(pub AppState);

impl UsageSink for ControlStoreUsage {
    fn report(
        &self,
        counts: Vec<(Arc<str>, UsageCounts)>,
    ) -> BoxFuture<Result<(), UsageReportError>> {
        let control = self.0.clone();
        Box::pin(async move {
            control
                .store()
                .add_usage(&rows(&counts))
                .await
                .map_err(|e| UsageReportError(e.to_string()))
        })
    }
}

/// Drains the counters into `sink`; when it fails they are put back for the
/// next flush.
pub async fn flush(gateway: &Gateway, sink: &dyn UsageSink) {
    gateway.report_usage(sink).await;
}

/// Flushes every `interval` until `shutdown` (the final flush is the caller's,
/// once the connections have closed).
pub async fn run(
    gateway: Gateway,
    sink: Arc<dyn UsageSink>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&gateway, &*sink).await,
            _ = shutdown.cancelled() => return,
        }
    }
}
