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
//! **Quota, cluster-wide:** the number of a tenant's retained messages is
//! read from the stream (its subjects under the tenant's root) before a set
//! that adds a topic; sets of new topics racing on several gateways can pass
//! the limit by as many as race. The byte limit is checked per message
//! (a message larger than the whole allowance is refused); the tenant's
//! total bytes are not counted across the cluster yet.
//!
//! Sets of one tenant go through one queue and one task, so a set and a
//! clear of the same topic by one publisher keep their order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aerie_core::message::{Persisted, codec};
use aerie_core::seams::{BoxFuture, RetainedQuota, RetainedStore, RetainedStores};
use aerie_core::store::unix_ms_now;
use aerie_core::{Limit, Message, Store, Ticket};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::subjects::Subjects;

/// Retained sets and lookups that failed on NATS, by `op`.
pub const RETAINED_ERRORS_TOTAL: &str = "aerie_retained_store_errors_total";

/// Sets of one tenant waiting for JetStream; past it a set is refused.
const SET_QUEUE: usize = 1024;
/// The longest a lookup waits for the stream's answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream's name for a deployment prefix.
pub fn stream_name(prefix: &str) -> String {
    format!("{prefix}_retained")
}

/// Every tenant's retained messages, in the stream.
pub struct JetStreamRetainedStores {
    js: jetstream::Context,
    client: async_nats::Client,
    stream: String,
    subjects: Subjects,
}

impl JetStreamRetainedStores {
    /// The stores over `client`'s JetStream; the stream is made (if
    /// missing) in the background, retried until NATS answers, so a
    /// gateway started before NATS still starts. JetStream keeps
    /// `replicas` copies of it.
    pub fn new(client: async_nats::Client, prefix: &str, replicas: usize) -> Self {
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
            js,
            client,
            stream: name,
            subjects: Subjects::new(prefix, "r"),
        }
    }

    /// The unexpired retained messages of `tenant` whose topics match
    /// `filter` (a valid, non-shared filter): what the control plane's
    /// `GET …/retained` shows, read as a SUBSCRIBE reads them.
    pub async fn matching(&self, tenant: &str, filter: &str) -> anyhow::Result<Vec<Message>> {
        unexpired_matching(&self.client, &self.stream, &self.subjects, tenant, filter).await
    }
}

impl RetainedStores for JetStreamRetainedStores {
    fn for_tenant(&self, tenant: &Arc<str>, _store: Arc<dyn Store>) -> Arc<dyn RetainedStore> {
        let (sets, queue) = mpsc::channel(SET_QUEUE);
        let shared = Arc::new(Shared {
            js: self.js.clone(),
            client: self.client.clone(),
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
            tenant: tenant.clone(),
            known: AtomicUsize::new(0),
        });
        tokio::spawn(write(shared.clone(), queue));
        Arc::new(TenantRetained { shared, sets })
    }
}

/// What one tenant's store and its writer task share.
struct Shared {
    js: jetstream::Context,
    client: async_nats::Client,
    stream: String,
    subjects: Subjects,
    tenant: Arc<str>,
    /// How many the tenant had at the last count (for `$SYS`).
    known: AtomicUsize,
}

type SetJob = (
    Arc<Message>,
    RetainedQuota,
    oneshot::Sender<Result<Ticket, Limit>>,
);

struct TenantRetained {
    shared: Arc<Shared>,
    sets: mpsc::Sender<SetJob>,
}

/// One tenant's writer: sets in the order they came.
async fn write(shared: Arc<Shared>, mut queue: mpsc::Receiver<SetJob>) {
    while let Some((message, quota, answer)) = queue.recv().await {
        let _ = answer.send(shared.set(&message, quota).await);
    }
}

impl Shared {
    async fn set(&self, message: &Message, quota: RetainedQuota) -> Result<Ticket, Limit> {
        let subject = self.subjects.topic(&self.tenant, &message.topic);
        if message.payload.is_empty() {
            let purged = async {
                self.js
                    .get_stream_no_info(&self.stream)
                    .await?
                    .purge()
                    .filter(subject)
                    .await
                    .map_err(anyhow::Error::from)
            };
            if let Err(error) = purged.await {
                metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "clear").increment(1);
                tracing::warn!(%error, tenant = %self.tenant, "clearing a retained message failed");
            }
            return Ok(0);
        }
        if message.weight() as u64 > quota.max_bytes {
            return Err(Limit::RetainedBytes);
        }
        match self.holds(&subject).await {
            Ok(Holds { this: false, count }) if count >= quota.max_messages as usize => {
                return Err(Limit::RetainedMessages);
            }
            Ok(_) => {}
            Err(error) => {
                // Not knowing the count is no reason to lose the message.
                metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "count").increment(1);
                tracing::warn!(%error, tenant = %self.tenant, "counting retained messages failed");
            }
        }
        let payload = Bytes::from(codec::encode_to_vec(message));
        let stored = async { self.js.publish(subject, payload).await?.await };
        if let Err(error) = stored.await {
            metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "set").increment(1);
            tracing::warn!(%error, tenant = %self.tenant, "storing a retained message failed");
        }
        Ok(0)
    }

    /// Whether the stream holds `subject` (then the count stops there), and
    /// how many of the tenant's subjects it holds.
    async fn holds(&self, subject: &str) -> anyhow::Result<Holds> {
        let stream = self.js.get_stream_no_info(&self.stream).await?;
        let mut subjects = stream
            .info_with_subjects(format!("{}.>", self.subjects.tenant_root(&self.tenant)))
            .await?;
        let mut holds = Holds {
            this: false,
            count: 0,
        };
        while let Some((s, _)) = subjects.try_next().await? {
            holds.count += 1;
            holds.this |= s == subject;
            if holds.this {
                return Ok(holds);
            }
        }
        self.known.store(holds.count, Ordering::Relaxed);
        Ok(holds)
    }
}

/// The unexpired retained messages of `tenant` whose topics match `filter`.
async fn unexpired_matching(
    client: &async_nats::Client,
    stream: &str,
    subjects: &Subjects,
    tenant: &str,
    filter: &str,
) -> anyhow::Result<Vec<Message>> {
    let found = last_of(client, stream, subjects.filter(tenant, filter)).await?;
    let now = unix_ms_now();
    Ok(found
        .into_iter()
        // NATS wildcards match `$`-topics; MQTT's leading ones do not.
        .filter(|m| aerie_proto::topic::matches(filter, &m.topic) && !m.is_expired(now))
        .collect())
}

/// The last message of every subject `subjects` match, in one direct
/// get (`multi_last`), answered message by message until end of batch.
async fn last_of(
    client: &async_nats::Client,
    stream: &str,
    subjects: Vec<String>,
) -> anyhow::Result<Vec<Message>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    let request = serde_json::json!({ "multi_last": subjects, "batch": 100_000 });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", stream),
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
            None | Some(200) => match codec::decode(&reply.payload, Persisted::default()) {
                Ok(m) => found.push(m),
                Err(error) => {
                    metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "decode").increment(1);
                    tracing::warn!(%error, "a retained message does not decode");
                }
            },
            // End of batch; or nothing matched.
            Some(204) | Some(404) => return Ok(found),
            Some(other) => anyhow::bail!(
                "direct get answered {other} {}",
                reply.description.unwrap_or_default()
            ),
        }
    }
}

struct Holds {
    this: bool,
    count: usize,
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
            let found = unexpired_matching(
                &shared.client,
                &shared.stream,
                &shared.subjects,
                &shared.tenant,
                &filter,
            )
            .await;
            match found {
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
        self.shared.known.load(Ordering::Relaxed)
    }

    /// Nothing to restore: the stream keeps them.
    fn restore(&self, _message: Arc<Message>) {}

    fn clear(&self) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let root = format!("{}.>", shared.subjects.tenant_root(&shared.tenant));
            let purged = async {
                shared
                    .js
                    .get_stream_no_info(&shared.stream)
                    .await?
                    .purge()
                    .filter(root)
                    .await
                    .map_err(anyhow::Error::from)
            };
            if let Err(error) = purged.await {
                metrics::counter!(RETAINED_ERRORS_TOTAL, "op" => "clear_all").increment(1);
                tracing::warn!(%error, tenant = %shared.tenant, "clearing a deleted tenant's retained messages failed");
            }
        });
    }
}
