//! Retained messages in a JetStream stream, shared by every gateway.
//!
//! The stream `<prefix>_retained` holds one message per subject
//! (`max_msgs_per_subject = 1`) on `<prefix>.r.<tenant>.<topic levels>`
//! ([`Subjects`]), the message in the core's codec. A set is a JetStream
//! publish (awaited: the router routes the message once it is kept); an
//! empty payload purges the subject. A SUBSCRIBE reads the last message of
//! every subject its filter's subjects match in one request (direct get,
//! `multi_last`): one round trip whatever the number of matches, and no
//! consumer to create or delete, where an ephemeral consumer per SUBSCRIBE
//! costs a create, a fetch and a delete.
//!
//! **Quota, cluster-wide** (`retained_usage.rs`): the tenant's count and
//! bytes are a record in the KV bucket `<prefix>_retained_usage`. A set
//! reads what its subject holds (from the stream's leader), reserves the
//! difference in the record with compare-and-set (checked against the
//! quota), then publishes only if the subject still holds what was read
//! (`Nats-Expected-Last-Subject-Sequence`); if it moved meanwhile, the set
//! starts again from its reservation. A clear deletes the subject up to the
//! sequence it read and gives back what that held. So the record follows
//! the stream exactly, but for what a crash or an unanswered request leaves
//! (reconciled later), and gateways setting at once never pass the quota.
//!
//! Sets of one tenant go through one queue and one task, so a set and a
//! clear of the same topic by one publisher keep their order.

use std::sync::Arc;
use std::time::Duration;

use aerie_core::message::codec;
use aerie_core::seams::{BoxFuture, RetainedQuota, RetainedStore, RetainedStores};
use aerie_core::{Limit, Message, Store, Ticket};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use crate::retained_stream::RETAINED_ERRORS_TOTAL;
use crate::retained_stream::{Published, RetainedStream};
pub use crate::retained_usage::Timing;
use crate::retained_usage::{Bucket, Delta, Refused, UsageBook};
use crate::subjects::Subjects;

/// Sets of one tenant waiting for JetStream; past it a set is refused.
const SET_QUEUE: usize = 1024;
/// Rounds of a set or clear whose subject keeps moving under it.
const MAX_ROUNDS: usize = 16;

/// The stream's name for a deployment prefix.
pub fn stream_name(prefix: &str) -> String {
    format!("{prefix}_retained")
}

/// Every tenant's retained messages, in the stream.
pub struct JetStreamRetainedStores {
    stream: RetainedStream,
    usage: Arc<Bucket>,
    timing: Timing,
}

impl JetStreamRetainedStores {
    /// The stores over `client`'s JetStream; the stream is made (if
    /// missing) in the background, retried until NATS answers, so a
    /// gateway started before NATS still starts. JetStream keeps
    /// `replicas` copies of it (and of the usage bucket).
    pub fn new(client: async_nats::Client, prefix: &str, replicas: usize) -> Self {
        Self::with_timing(client, prefix, replicas, Timing::default())
    }

    /// As [`JetStreamRetainedStores::new`], reconciling usage records on
    /// `timing`.
    pub fn with_timing(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
        timing: Timing,
    ) -> Self {
        let js = jetstream::new(client.clone());
        let name = stream_name(prefix);
        let config = stream::Config {
            name: name.clone(),
            description: Some("Aerie: retained messages, the last one per topic".into()),
            subjects: vec![format!("{prefix}.r.>")],
            max_messages_per_subject: 1,
            allow_direct: true,
            num_replicas: replicas,
            ..Default::default()
        };
        let opening = js.clone();
        tokio::spawn(async move {
            while let Err(error) = crate::replicas::open_stream(&opening, config.clone()).await {
                tracing::warn!(%error, "cannot open the retained stream yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        JetStreamRetainedStores {
            usage: Arc::new(Bucket::new(js.clone(), prefix, replicas)),
            stream: RetainedStream {
                js,
                client,
                name,
                subjects: Subjects::new(prefix, "r"),
            },
            timing,
        }
    }

    /// The unexpired retained messages of `tenant` whose topics match
    /// `filter` (a valid, non-shared filter): what the control plane's
    /// `GET …/retained` shows, read as a SUBSCRIBE reads them.
    pub async fn matching(&self, tenant: &str, filter: &str) -> anyhow::Result<Vec<Message>> {
        self.stream.unexpired_matching(tenant, filter).await
    }
}

impl RetainedStores for JetStreamRetainedStores {
    fn for_tenant(&self, tenant: &Arc<str>, _store: Arc<dyn Store>) -> Arc<dyn RetainedStore> {
        let (sets, queue) = mpsc::channel(SET_QUEUE);
        let shared = Arc::new(Shared {
            stream: self.stream.clone(),
            tenant: tenant.clone(),
            usage: UsageBook::new(self.usage.clone(), self.stream.clone(), tenant.clone()),
        });
        tokio::spawn(write(shared.clone(), queue));
        let stop = CancellationToken::new();
        let (reconciling, timing) = (shared.clone(), self.timing);
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = reconciling.usage.keep_reconciled(timing) => {}
                () = stopped.cancelled() => {}
            }
        });
        Arc::new(TenantRetained {
            shared,
            sets,
            _reconciling: stop.drop_guard(),
        })
    }
}

/// What one tenant's store, its writer task and its reconciles share.
struct Shared {
    stream: RetainedStream,
    tenant: Arc<str>,
    usage: UsageBook,
}

type SetJob = (
    Arc<Message>,
    RetainedQuota,
    oneshot::Sender<Result<Ticket, Limit>>,
);

struct TenantRetained {
    shared: Arc<Shared>,
    sets: mpsc::Sender<SetJob>,
    /// Stops the tenant's reconciles when the store is dropped.
    _reconciling: DropGuard,
}

/// One tenant's writer: sets in the order they came.
async fn write(shared: Arc<Shared>, mut queue: mpsc::Receiver<SetJob>) {
    while let Some((message, quota, answer)) = queue.recv().await {
        let stored = if message.payload.is_empty() {
            shared.clear(&message).await;
            Ok(0)
        } else {
            shared.set(&message, quota).await
        };
        let _ = answer.send(stored);
    }
}

impl Shared {
    fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => op).increment(1);
        tracing::warn!(%error, tenant = %self.tenant, op, "a retained message's write failed");
    }

    /// Makes `message` its topic's retained message within `quota`: reserve
    /// the change in the usage record, then publish if the subject is still
    /// as read; a subject that moved meanwhile starts a new round from the
    /// reservation held.
    async fn set(&self, message: &Message, quota: RetainedQuota) -> Result<Ticket, Limit> {
        let subject = self.stream.subjects.topic(&self.tenant, &message.topic);
        let payload = Bytes::from(codec::encode_to_vec(message));
        let weight = message.weight() as u64;
        let mut held = Delta::ZERO;
        for _ in 0..MAX_ROUNDS {
            let old = match self.stream.held(&subject).await {
                Ok(old) => old,
                Err(error) => {
                    // Not knowing what it holds is no reason to lose the
                    // message: published as is, the record reconciled.
                    self.failed("count", &error);
                    self.usage.suspect_drift();
                    return self.publish_uncounted(subject, payload).await;
                }
            };
            let wanted = Delta::between(old.map(|h| h.weight), Some(weight));
            match self.usage.shift(held, wanted, Some(quota)).await {
                Ok(()) => held = wanted,
                Err(Refused::Limit(limit)) => return Err(limit),
                Err(Refused::Failed(error)) => {
                    self.failed("usage", &error);
                    self.usage.suspect_drift();
                    return self.publish_uncounted(subject, payload).await;
                }
            }
            match self
                .stream
                .publish_if(subject.clone(), payload.clone(), old)
                .await
            {
                Published::Kept => return Ok(0),
                Published::Moved => continue,
                Published::Failed(error) => {
                    self.failed("set", &error);
                    self.give_back(held).await;
                    return Ok(0);
                }
                Published::Unknown(error) => {
                    // Kept or not: the reservation stays until a reconcile.
                    self.failed("set", &error);
                    self.usage.suspect_drift();
                    return Ok(0);
                }
            }
        }
        self.failed("set", &"its topic kept changing under it");
        self.give_back(held).await;
        Ok(0)
    }

    /// A set whose usage could not be counted: published whatever the
    /// subject holds, as before the quota was counted cluster-wide.
    async fn publish_uncounted(&self, subject: String, payload: Bytes) -> Result<Ticket, Limit> {
        let stored = async { self.stream.js.publish(subject, payload).await?.await };
        if let Err(error) = stored.await {
            self.failed("set", &error);
        }
        Ok(0)
    }

    /// Gives back a reservation whose publish did not happen.
    async fn give_back(&self, held: Delta) {
        self.settle(held, Delta::ZERO).await;
    }

    /// Moves the reservation from `held` to `wanted` whatever the quota.
    async fn settle(&self, held: Delta, wanted: Delta) {
        if let Err(Refused::Failed(error)) = self.usage.shift(held, wanted, None).await {
            self.failed("usage", &error);
            self.usage.suspect_drift();
        }
    }

    /// Deletes `message`'s topic's retained message, up to the sequence
    /// read (a newer set of it is a new round), and gives back what it held.
    async fn clear(&self, message: &Message) {
        let subject = self.stream.subjects.topic(&self.tenant, &message.topic);
        for _ in 0..MAX_ROUNDS {
            let cleared = async {
                let Some(old) = self.stream.held(&subject).await? else {
                    return Ok(Some(Delta::ZERO));
                };
                let purged = self
                    .stream
                    .purge(subject.clone(), Some(old.seq + 1))
                    .await?;
                Ok::<_, anyhow::Error>((purged > 0).then(|| Delta::between(Some(old.weight), None)))
            };
            match cleared.await {
                Ok(Some(Delta::ZERO)) => return,
                Ok(Some(freed)) => return self.settle(Delta::ZERO, freed).await,
                // Replaced since it was read: clear what is there now.
                Ok(None) => continue,
                Err(error) => {
                    self.failed("clear", &error);
                    break;
                }
            }
        }
        // What it held is unknown: deleted whatever it is, counted later.
        if let Err(error) = self.stream.purge(subject, None).await {
            self.failed("clear", &error);
        }
        self.usage.suspect_drift();
    }
}

impl RetainedStore for TenantRetained {
    fn set(
        &self,
        message: &Arc<Message>,
        quota: RetainedQuota,
    ) -> BoxFuture<Result<Ticket, Limit>> {
        let (answer, answered) = oneshot::channel();
        // Queued now, in the caller's order; answered by the writer.
        if self
            .sets
            .try_send((message.clone(), quota, answer))
            .is_err()
        {
            metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "queue_full").increment(1);
            return Box::pin(std::future::ready(Err(Limit::RetainedMessages)));
        }
        Box::pin(async move { answered.await.unwrap_or(Ok(0)) })
    }

    fn matching(&self, filter: &str) -> BoxFuture<Vec<Arc<Message>>> {
        let shared = self.shared.clone();
        let filter = filter.to_string();
        Box::pin(async move {
            match shared
                .stream
                .unexpired_matching(&shared.tenant, &filter)
                .await
            {
                Ok(found) => found.into_iter().map(Arc::new).collect(),
                Err(error) => {
                    metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "match").increment(1);
                    tracing::warn!(%error, tenant = %shared.tenant, "reading retained messages failed");
                    Vec::new()
                }
            }
        })
    }

    fn count(&self) -> usize {
        self.shared.usage.count()
    }

    /// Nothing to restore: the stream keeps them.
    fn restore(&self, _message: Arc<Message>) {}

    fn clear(&self) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let root = format!("{}.>", shared.stream.subjects.tenant_root(&shared.tenant));
            if let Err(error) = shared.stream.purge(root, None).await {
                shared.failed("clear_all", &error);
            }
            if let Err(error) = shared.usage.remove().await {
                shared.failed("clear_all", &error);
            }
        });
    }
}
