//! Usage in the scale-out shape: each `aerie gateway` publishes its usage
//! rows to the JetStream stream `<prefix>_usage` (subject
//! `<prefix>.usage.<node>`), and `aerie control --nats` folds every report
//! into the `usage` table exactly once: the report's stream sequence is
//! recorded in the transaction that adds it (`add_usage_report`), and the
//! consumer hands out one report at a time, so a report delivered again
//! after a crash adds nothing.
//!
//! A gateway keeps a report it could not publish and sends it again, under
//! the same message id (JetStream drops the duplicate if the first did
//! arrive), before it drains anything new.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aerie_control::AppState;
use aerie_control::store::UsageRow;
use aerie_facts::Nats;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use aerie_core::seams::BoxFuture;
use aerie_core::{UsageCounts, UsageReportError, UsageSink};
use std::sync::Arc;

/// Reports folded into the `usage` table (`outcome="folded"`), delivered
/// again and skipped (`"duplicate"`), or refused as unreadable (`"refused"`).
pub const USAGE_REPORTS_TOTAL: &str = "aerie_usage_reports_total";

/// The durable consumer every control plane shares.
const CONSUMER: &str = "control";
/// How long a report waits in the stream at most (no control plane running).
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

fn stream_name(prefix: &str) -> String {
    format!("{prefix}_usage")
}

/// The stream, made if missing: a work queue (a folded report is deleted).
async fn usage_stream(nats: &Nats, prefix: &str) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: stream_name(prefix),
        description: Some("Aerie: usage reports of the gateways".into()),
        subjects: vec![format!("{prefix}.usage.>")],
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: MAX_AGE,
        num_replicas: nats.replicas().await?,
        ..Default::default()
    };
    aerie_cluster::replicas::open_stream(&nats.jetstream(), config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the usage stream: {e}"))
}

/// The gateway side (cheap to clone: the sink's futures own a clone).
#[derive(Clone)]
pub struct UsageStream(Arc<StreamReporter>);

struct StreamReporter {
    nats: Nats,
    prefix: String,
    subject: String,
    /// Message ids are `<node>-<boot>-<n>`: unique across restarts.
    id_prefix: String,
    next: AtomicU64,
    /// A report taken but not acknowledged by JetStream yet: (id, payload).
    pending: Mutex<Option<(String, bytes::Bytes)>>,
}

impl UsageStream {
    pub fn new(nats: Nats, prefix: &str, node_id: &str) -> UsageStream {
        UsageStream(Arc::new(StreamReporter {
            nats,
            prefix: prefix.to_owned(),
            subject: format!("{prefix}.usage.{}", subject_token(node_id)),
            id_prefix: format!("{node_id}-{:016x}", rand::random::<u64>()),
            next: AtomicU64::new(0),
            pending: Mutex::new(None),
        }))
    }
}

impl StreamReporter {
    /// Publishes the pending report; clears it once JetStream has it.
    async fn send_pending(&self) -> anyhow::Result<()> {
        let Some((id, payload)) = self.pending.lock().clone() else {
            return Ok(());
        };
        usage_stream(&self.nats, &self.prefix).await?;
        self.nats
            .jetstream()
            .send_publish(
                self.subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload)
                    .message_id(id),
            )
            .await
            .map_err(|e| anyhow::anyhow!("publish a usage report: {e}"))?
            .await
            .map_err(|e| anyhow::anyhow!("a usage report was not acknowledged: {e}"))?;
        *self.pending.lock() = None;
        Ok(())
    }
}

/// A node id as one subject token (`.`, `*`, `>` and spaces are not).
fn subject_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl UsageSink for UsageStream {
    fn report(
        &self,
        counts: Vec<(Arc<str>, UsageCounts)>,
    ) -> BoxFuture<Result<(), UsageReportError>> {
        let this = self.0.clone();
        Box::pin(async move {
            let fail = |e: anyhow::Error| UsageReportError(format!("{e:#}"));
            // The last report first: until it is in, new counters stay counters.
            this.send_pending().await.map_err(fail)?;
            let n = this.next.fetch_add(1, Ordering::Relaxed);
            let payload =
                serde_json::to_vec(&crate::usage::rows(&counts)).map_err(|e| fail(e.into()))?;
            *this.pending.lock() = Some((format!("{}-{n}", this.id_prefix), payload.into()));
            // Taken now: a failure here is retried with the same id next time.
            if let Err(e) = this.send_pending().await {
                tracing::warn!(error = %format!("{e:#}"), "usage report kept for the next flush");
            }
            Ok(())
        })
    }
}

/// The control side: folds the gateways' reports into the `usage` table
/// until `shutdown`.
pub fn spawn_folder(
    nats: Nats,
    prefix: String,
    control: AppState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                result = fold(&nats, &prefix, &control) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %format!("{e:#}"), "folding usage reports stopped; retrying");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

async fn fold(nats: &Nats, prefix: &str, control: &AppState) -> anyhow::Result<()> {
    let stream = usage_stream(nats, prefix).await?;
    let name = stream_name(prefix);
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                // One report in flight among all control planes: folded in
                // stream order, so "at or below the last sequence" is "seen".
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("usage consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("usage consumer messages: {e}"))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("usage report: {e}"))?;
        let sequence = message
            .info()
            .map_err(|e| anyhow::anyhow!("usage report metadata: {e}"))?
            .stream_sequence;
        let outcome = match serde_json::from_slice::<Vec<UsageRow>>(&message.payload) {
            Ok(rows) => {
                let sequence = i64::try_from(sequence).context("stream sequence")?;
                match control
                    .store()
                    .add_usage_report(&name, sequence, &rows)
                    .await
                {
                    Ok(true) => "folded",
                    Ok(false) => "duplicate",
                    Err(e) => {
                        // Not acknowledged: delivered again in a moment.
                        let _ = message
                            .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1))))
                            .await;
                        return Err(anyhow::anyhow!("cannot fold a usage report: {e}"));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(sequence, error = %e, "a usage report that does not parse; dropped");
                "refused"
            }
        };
        metrics::counter!(USAGE_REPORTS_TOTAL, "outcome" => outcome).increment(1);
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledge a usage report: {e}"))?;
    }
    Err(anyhow::anyhow!("the usage consumer ended"))
}

#[cfg(test)]
mod tests {
    use super::subject_token;

    #[test]
    fn a_node_id_becomes_one_subject_token() {
        assert_eq!(subject_token("gw-1_a"), "gw-1_a");
        assert_eq!(subject_token("eu.west 1>*"), "eu_west_1__");
    }
}
