//! Usage metering at the gateway: connection time per tenant, and draining
//! every tenant's counters (`aerie_core::Usage`) for whoever reports them.
//!
//! Connection time is metered per connection from `metered_until`: each
//! drain adds, for every live connection, the time since it was last
//! metered; a connection that ends adds its last stretch and marks itself
//! done, so no interval is counted twice or lost between two drains.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use aerie_core::{Tenant, UsageCounts, UsageSink};

use crate::Gateway;
use crate::registry::LiveConnection;

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1))
}

/// Adds the connection's time up to `now_ms` not yet counted.
fn meter(live: &LiveConnection, tenant: &Tenant, now_ms: u64) {
    let before = live.metered_until.fetch_max(now_ms, Ordering::Relaxed);
    tenant.usage().connected_for(now_ms.saturating_sub(before));
}

/// Called once when a connection ends: its last stretch of connection time.
pub(crate) fn connection_ended(live: &LiveConnection, tenant: &Tenant) {
    let now_ms = unix_ms(SystemTime::now());
    let before = live.metered_until.swap(u64::MAX, Ordering::Relaxed);
    tenant.usage().connected_for(now_ms.saturating_sub(before));
}

impl Gateway {
    /// Meters the connection time of every live connection up to now, then
    /// drains every tenant's usage counters: the tenants with anything to
    /// report, with what they did since the last drain.
    pub fn drain_usage(&self) -> Vec<(Arc<str>, UsageCounts)> {
        let now_ms = unix_ms(SystemTime::now());
        let broker = self.broker();
        for tenant_id in self.registry().tenants() {
            let tenant = broker.tenant(&tenant_id);
            for live in self.registry().connections(&tenant_id) {
                meter(&live, &tenant, now_ms);
            }
        }
        broker
            .tenants()
            .into_iter()
            .filter_map(|t| {
                let counts = t.usage().take();
                (!counts.is_zero()).then(|| (t.id.clone(), counts))
            })
            .collect()
    }

    /// Puts back counts that could not be reported, for the next drain.
    pub fn restore_usage(&self, tenant_id: &str, counts: UsageCounts) {
        self.broker().tenant(tenant_id).usage().restore(counts);
    }

    /// Drains the usage counters into `sink`; on its error they are put
    /// back for the next report.
    pub async fn report_usage(&self, sink: &dyn UsageSink) {
        let drained = self.drain_usage();
        if drained.is_empty() {
            return;
        }
        let tenants = drained.len();
        match sink.report(drained.clone()).await {
            Ok(()) => tracing::debug!(tenants, "usage reported"),
            Err(e) => {
                tracing::warn!(error = %e, tenants, "cannot report usage; kept for the next report");
                for (tenant, counts) in drained {
                    self.restore_usage(&tenant, counts);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_core::seams::BoxFuture;
    use aerie_core::{Broker, CoreConfig, UsageReportError};
    use parking_lot::Mutex;

    /// Takes reports, or refuses them while `failing`.
    #[derive(Default)]
    struct Sink {
        failing: bool,
        got: Mutex<Vec<(Arc<str>, UsageCounts)>>,
    }

    impl UsageSink for Sink {
        fn report(
            &self,
            counts: Vec<(Arc<str>, UsageCounts)>,
        ) -> BoxFuture<Result<(), UsageReportError>> {
            if self.failing {
                return Box::pin(std::future::ready(Err(UsageReportError("down".into()))));
            }
            self.got.lock().extend(counts);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn usage_the_sink_refused_goes_with_the_next_report() {
        let gateway = Gateway::new(
            Broker::new(CoreConfig::default()),
            crate::GatewayConfig::default(),
        );
        gateway.broker().tenant("t").usage().published(10);
        gateway
            .report_usage(&Sink {
                failing: true,
                ..Default::default()
            })
            .await;
        gateway.broker().tenant("t").usage().published(5);
        let sink = Sink::default();
        gateway.report_usage(&sink).await;
        let got = sink.got.lock().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (&*got[0].0, got[0].1.messages_in, got[0].1.bytes_in),
            ("t", 2, 15)
        );
    }
}
