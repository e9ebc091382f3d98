//! The retained stream's reads and writes, one request each: the last
//! message of a subject (from the stream's leader), a publish that holds only
//! if the subject is still as it was read, a purge of one subject up to a
//! sequence, and the last message of every subject under some filters
//! (direct get, `multi_last`).

use std::time::Duration;

use aerie_core::Message;
use aerie_core::message::{Persisted, codec};
use aerie_core::store::unix_ms_now;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::retained_usage::Usage;
use crate::subjects::Subjects;

/// Retained sets and lookups that failed on NATS, by `op`.
pub const RETAINED_ERRORS_TOTAL: &str = "aerie_retained_store_errors_total";
/// Expired retained messages deleted from the stream (by a reconcile).
pub const EXPIRED_PURGED_TOTAL: &str = "aerie_retained_expired_purged_total";

/// The longest a lookup waits for the stream's answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a subject holds: its message's stream sequence and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub seq: u64,
    pub weight: u64,
}

/// A retained message as the stream keeps it.
pub(crate) struct Stored {
    pub seq: u64,
    pub subject: String,
    pub message: Message,
}

/// How a publish that expected the subject as read ended.
pub(crate) enum Published {
    Kept,
    /// The subject changed since it was read: nothing was written.
    Moved,
    /// JetStream refused it, or it never left: nothing was written.
    Failed(String),
    /// No answer: it may have been kept or not.
    Unknown(String),
}

/// The stream of one deployment.
#[derive(Clone)]
pub(crate) struct RetainedStream {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub name: String,
    pub subjects: Subjects,
}

/// The weight the quota counts for a stored retained message (the core's
/// `Message::weight`); one that does not decode weighs what it takes.
pub(crate) fn weight_of(raw: &[u8]) -> u64 {
    match codec::decode(raw, Persisted::default()) {
        Ok(m) => m.weight() as u64,
        Err(_) => raw.len() as u64 + 64,
    }
}

impl RetainedStream {
    /// A handle on the stream (no request is made).
    async fn stream(&self) -> anyhow::Result<stream::Stream<()>> {
        Ok(self.js.get_stream_no_info(&self.name).await?)
    }

    /// What `subject` holds now. Read from the stream's leader (a replica
    /// may not have the last write yet).
    pub async fn held(&self, subject: &str) -> anyhow::Result<Option<Held>> {
        match self
            .stream()
            .await?
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(m) => Ok(Some(Held {
                seq: m.sequence,
                weight: weight_of(&m.payload),
            })),
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes `payload` on `subject` if the subject's last message is
    /// still `expected` (its sequence; none: it holds nothing).
    pub async fn publish_if(
        &self,
        subject: String,
        payload: Bytes,
        expected: Option<Held>,
    ) -> Published {
        use context::PublishErrorKind as Kind;
        let publish = PublishMessage::build()
            .payload(payload)
            .expected_last_subject_sequence(expected.map_or(0, |h| h.seq));
        let acked = async { self.js.send_publish(subject, publish).await?.await };
        match acked.await {
            Ok(_) => Published::Kept,
            Err(e) if e.kind() == Kind::WrongLastSequence => Published::Moved,
            Err(e) if matches!(e.kind(), Kind::TimedOut | Kind::BrokenPipe) => {
                Published::Unknown(e.to_string())
            }
            Err(e) => Published::Failed(e.to_string()),
        }
    }

    /// Deletes the messages of `subject` (a subject or a filter) older than
    /// `before` (all of them if none); how many went.
    pub async fn purge(&self, subject: String, before: Option<u64>) -> anyhow::Result<u64> {
        let purge = self.stream().await?.purge().filter(subject);
        let purged = match before {
            Some(seq) => purge.sequence(seq).await?,
            None => purge.await?,
        };
        Ok(purged.purged)
    }

    /// The unexpired retained messages of `tenant` whose topics match
    /// `filter` (a valid, non-shared filter).
    pub async fn unexpired_matching(
        &self,
        tenant: &str,
        filter: &str,
    ) -> anyhow::Result<Vec<Message>> {
        let found = self.last_of(self.subjects.filter(tenant, filter)).await?;
        let now = unix_ms_now();
        Ok(found
            .into_iter()
            .map(|s| s.message)
            // NATS wildcards match `$`-topics; MQTT's leading ones do not.
            .filter(|m| aerie_proto::topic::matches(filter, &m.topic) && !m.is_expired(now))
            .collect())
    }

    /// What `tenant`'s retained messages use, read from the stream; expired
    /// ones are deleted (each up to its own sequence, so a newer set of its
    /// topic stays) and not counted.
    pub async fn measure(&self, tenant: &str) -> anyhow::Result<Usage> {
        let root = format!("{}.>", self.subjects.tenant_root(tenant));
        let now = unix_ms_now();
        let mut usage = Usage::default();
        for stored in self.last_of(vec![root]).await? {
            if stored.message.is_expired(now) {
                if self.purge(stored.subject, Some(stored.seq + 1)).await? > 0 {
                    metrics::counter!(EXPIRED_PURGED_TOTAL).increment(1);
                }
                continue;
            }
            usage.count += 1;
            usage.bytes += stored.message.weight() as u64;
        }
        Ok(usage)
    }

    /// The last message of every subject `subjects` match, in one direct
    /// get (`multi_last`), answered message by message until end of batch.
    async fn last_of(&self, subjects: Vec<String>) -> anyhow::Result<Vec<Stored>> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await?;
        let request = serde_json::json!({ "multi_last": subjects, "batch": 100_000 });
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", self.name),
                inbox,
                Bytes::from(request.to_string()),
            )
            .await?;
        let mut found = Vec::new();
        loop {
            let reply = tokio::time::timeout(LOOKUP_TIMEOUT, replies.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the reply subscription ended"))?;
            match reply.status.map(|s| s.as_u16()) {
                None | Some(200) => {
                    let header = |name: &str| {
                        reply
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_owned())
                    };
                    let seq = header("Nats-Sequence").and_then(|s| s.parse().ok());
                    let subject = header("Nats-Subject");
                    let decoded = codec::decode(&reply.payload, Persisted::default());
                    match (seq, subject, decoded) {
                        (Some(seq), Some(subject), Ok(message)) => found.push(Stored {
                            seq,
                            subject,
                            message,
                        }),
                        (_, _, Err(error)) => {
                            metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "decode").increment(1);
                            tracing::warn!(%error, "a retained message does not decode");
                        }
                        _ => anyhow::bail!("a direct get answer without its sequence or subject"),
                    }
                }
                // End of batch; or nothing matched.
                Some(204) | Some(404) => return Ok(found),
                Some(other) => anyhow::bail!(
                    "direct get answered {other} {}",
                    reply.description.unwrap_or_default()
                ),
            }
        }
    }
}
