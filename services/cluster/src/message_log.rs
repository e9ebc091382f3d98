//! [`JetStreamLog`]: the core's message log on JetStream, so a QoS 1/2
//! PUBLISH is kept before its publisher is acknowledged.
//!
//! - **Streams:** one per tenant, `<prefix>_log_<tenant>` (the tenant as a
//!   key token, `kv_key.rs`), made on the tenant's first QoS 1/2 PUBLISH on
//!   this node, on the subjects `<prefix>.l.<tenant>.<one token per topic
//!   level>` ([`Subjects`]): a resume replays a session's filters from its
//!   cursor with a filtered consumer (`session_records.rs`).
//!   Limits-based, bounded by age and bytes ([`Retention`]), the oldest
//!   discarded; as many copies as the other streams (`replicas.rs`).
//! - **Appends:** each message in the core's codec, its id in `Nats-Msg-Id`
//!   (a resend after a timeout is stored once), sent in order by one task,
//!   many in flight. Each append takes the next ticket; the durable ticket
//!   moves past it once JetStream acknowledged it (and every earlier one),
//!   and the publisher's PUBACK/PUBREC waits for that in the connection's
//!   held acknowledgements ([`JetStreamLog::acks`] is the broker's store).
//! - **While JetStream cannot take a write** (leader election, no quorum,
//!   NATS down): an append is retried (the same message id) until
//!   `give_up_after`; the acks behind it wait, and the connection answers
//!   them at `--store-ack-timeout` (v5: 0x80; 3.1.1: disconnected). An
//!   append is given up only after that (`give_up_after` is longer), so a
//!   given-up one was never acknowledged as kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aerie_core::message::codec;
use aerie_core::quota::TenantLimits;
use aerie_core::seams::{BoxFuture, MessageLog};
use aerie_core::store::StoreOp;
use aerie_core::{Limit, Message, Store, Ticket};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::subjects::Subjects;

/// Messages JetStream acknowledged in a tenant's log.
pub const APPENDS_TOTAL: &str = "aerie_message_log_appends_total";
/// Appends that failed, by `reason`: each failed attempt (`no_stream`,
/// `timeout`, `jetstream`, `stream_open`), one given up (`gave_up`), or a
/// message never sent (`too_large`, `subject_too_long`: refused, 0x97).
pub const APPEND_FAILURES_TOTAL: &str = "aerie_message_log_append_failures_total";
/// Seconds from a PUBLISH to JetStream's acknowledgement of its append:
/// how long its PUBACK/PUBREC was held for the log.
pub const ACK_WAIT_SECONDS: &str = "aerie_message_log_ack_wait_seconds";
/// Appends not yet acknowledged by JetStream.
pub const PENDING: &str = "aerie_message_log_pending";
/// QoS 2 resends (DUP) of messages a gateway now gone had recorded, by
/// `outcome`: `held` (it had appended them: not routed again), `appended`
/// (it had not: routed now), `unknown` (JetStream did not answer in time:
/// refused as the store being unavailable).
pub const RESENDS_TOTAL: &str = "aerie_message_log_qos2_resends_total";

/// Appends sent to JetStream and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 1024;
/// Past this many appends not yet settled, connections whose acks wait for
/// the log are not read (the store's back-pressure, `Store::is_backlogged`).
const BACKLOGGED_AT: usize = 16_384;
/// One attempt's wait for JetStream's acknowledgement; then it is sent
/// again (same message id: stored once).
const ATTEMPT_WAIT: Duration = Duration::from_secs(2);
/// JetStream forgets message ids after this (never more than the log's age).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a QoS 2 resend waits to learn whether the log held it.
const RESENT_WAIT: Duration = Duration::from_secs(5);
/// Room for the `Nats-Msg-Id` header in NATS's `max_payload`.
const HEADER_ROOM: usize = 128;

/// How much of a tenant's log JetStream keeps: its plan's
/// `message_log_max_age` and `message_log_max_bytes`, within the
/// operator's ceiling (`aerie gateway --message-log-max-age /
/// --message-log-max-bytes`, which alone bound a tenant whose limits this
/// gateway has not had yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Retention {
    /// A plan's retention, within this ceiling.
    pub fn within(self, limits: &TenantLimits) -> Retention {
        Retention {
            max_age: self
                .max_age
                .min(Duration::from_secs(u64::from(limits.message_log_max_age))),
            max_bytes: self.max_bytes.min(limits.message_log_max_bytes),
        }
    }

    fn max_bytes_i64(self) -> i64 {
        i64::try_from(self.max_bytes).unwrap_or(i64::MAX)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// How a node's log is kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The deployment's `--nats-prefix`.
    pub prefix: String,
    /// `--nats-replicas`: copies JetStream keeps; without it, one per
    /// server of the cluster up to 3, counted when a tenant's stream is
    /// opened (`replicas::wanted`): by then a cluster that was still
    /// forming when the gateway started lists all its servers.
    pub replicas: Option<usize>,
    pub retention: Retention,
    /// An append not kept by then is given up: longer than the connection's
    /// `--store-ack-timeout`, so its ack was answered without it first.
    pub give_up_after: Duration,
}

/// The stream of `tenant`'s log.
pub fn stream_name(prefix: &str, tenant: &str) -> String {
    format!("{prefix}_log_{}", crate::kv_key::token(tenant))
}

/// The message log of one node (see the module doc).
pub struct JetStreamLog {
    shared: Arc<Shared>,
    /// The last ticket given and the sender's queue, together so tickets
    /// reach the sender in their order.
    queue: Mutex<(Ticket, mpsc::UnboundedSender<Append>)>,
}

struct Shared {
    js: jetstream::Context,
    client: async_nats::Client,
    config: LogConfig,
    subjects: Subjects,
    durable: watch::Sender<Ticket>,
    /// Appends given a ticket and not settled yet.
    pending: AtomicUsize,
    /// Tenants whose stream this node opened (or is opening).
    opened: Mutex<HashMap<Arc<str>, Arc<OnceCell<()>>>>,
    /// Tenants' retention, from their plans (`MessageLog::limits_changed`).
    retention: Mutex<HashMap<Arc<str>, Retention>>,
}

/// One message on its way to its tenant's log.
struct Append {
    ticket: Ticket,
    tenant: Arc<str>,
    subject: String,
    payload: Bytes,
    id: String,
    at: Instant,
}

impl JetStreamLog {
    /// The log over `client`'s JetStream; its sender ends with `shutdown`.
    pub fn start(
        client: async_nats::Client,
        config: LogConfig,
        shutdown: CancellationToken,
    ) -> Arc<JetStreamLog> {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(ATTEMPT_WAIT)
            .max_ack_inflight(MAX_IN_FLIGHT)
            .build(client.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            js,
            client,
            subjects: Subjects::new(&config.prefix, "l"),
            config,
            durable: watch::Sender::new(0),
            pending: AtomicUsize::new(0),
            opened: Mutex::default(),
            retention: Mutex::default(),
        });
        tokio::spawn(send(shared.clone(), rx, shutdown));
        Arc::new(JetStreamLog {
            shared,
            queue: Mutex::new((0, tx)),
        })
    }

    /// The broker's store in the scale-out shape: it keeps nothing, and its
    /// durable ticket is the log's, so acknowledgements wait for the log.
    pub fn acks(&self) -> Arc<dyn Store> {
        Arc::new(LogTickets(self.shared.clone()))
    }
}

fn refuse(reason: &'static str) -> Result<Append, Limit> {
    metrics::counter!(APPEND_FAILURES_TOTAL, "reason" => reason).increment(1);
    Err(Limit::PacketSize)
}

impl JetStreamLog {
    /// `message` as an append to `tenant`'s log; `Err(reason)` when the log
    /// can never keep it.
    fn prepare(&self, tenant: &Arc<str>, message: &Arc<Message>) -> Result<Append, &'static str> {
        let subject = self.shared.subjects.topic(tenant, &message.topic);
        if subject.len() > crate::backbone::MAX_SUBJECT {
            return Err("subject_too_long");
        }
        let payload = Bytes::from(codec::encode_to_vec(message));
        let max = self
            .shared
            .client
            .try_server_info()
            .map_or(usize::MAX, |i| i.max_payload);
        if payload.len() + HEADER_ROOM > max {
            return Err("too_large");
        }
        Ok(Append {
            ticket: 0,
            tenant: tenant.clone(),
            subject,
            payload,
            // The same message id on every node: a QoS 2 resend after a
            // node's death is the same message (`append_resent`).
            id: format!("{:016x}-{}", message.id.node.0, message.id.seq),
            at: Instant::now(),
        })
    }
}

impl MessageLog for JetStreamLog {
    fn limits_changed(&self, tenant: &Arc<str>, limits: &TenantLimits) {
        let wanted = self.shared.config.retention.within(limits);
        let before = self.shared.retention.lock().insert(tenant.clone(), wanted);
        if before == Some(wanted) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (shared, tenant) = (self.shared.clone(), tenant.clone());
            runtime.spawn(async move { shared.retention_changed(&tenant).await });
        }
    }

    fn append(&self, tenant: &Arc<str>, message: &Arc<Message>) -> Result<Ticket, Limit> {
        let append = self.prepare(tenant, message).or_else(refuse)?;
        let mut queue = self.queue.lock();
        queue.0 += 1;
        let ticket = queue.0;
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        // Closed only at shutdown: the ack then never comes (bounded by
        // the connection's wait), as nothing was kept.
        let _ = queue.1.send(Append { ticket, ..append });
        Ok(ticket)
    }

    fn append_resent(&self, tenant: &Arc<str>, message: &Arc<Message>) -> BoxFuture<Option<bool>> {
        let Ok(append) = self.prepare(tenant, message) else {
            // Never kept: its first copy was refused as this one will be.
            return Box::pin(std::future::ready(Some(false)));
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            // JetStream drops a second copy with the same `Nats-Msg-Id`
            // within the stream's duplicate window, and says so.
            let held = shared.append_until(&append, append.at + RESENT_WAIT).await;
            let outcome = match held {
                Some(true) => "held",
                Some(false) => "appended",
                None => "unknown",
            };
            metrics::counter!(RESENDS_TOTAL, "outcome" => outcome).increment(1);
            held
        })
    }
}

/// Sends appends in order, many in flight, and moves the durable ticket
/// past each once it and every earlier one settled.
async fn send(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Append>,
    shutdown: CancellationToken,
) {
    let pending = metrics::gauge!(PENDING);
    let mut in_flight = FuturesOrdered::new();
    loop {
        tokio::select! {
            next = queue.recv(), if in_flight.len() < MAX_IN_FLIGHT => match next {
                Some(append) => in_flight.push_back(shared.clone().keep(append)),
                None => return,
            },
            Some(ticket) = in_flight.next(), if !in_flight.is_empty() => {
                let left = shared.pending.fetch_sub(1, Ordering::Relaxed) - 1;
                pending.set(left as f64);
                shared.durable.send_replace(ticket);
            }
            () = shutdown.cancelled() => return,
        }
    }
}

impl Shared {
    /// Appends until JetStream kept it or `give_up_after` passed; its
    /// ticket either way (a given-up one's ack was answered without it).
    async fn keep(self: Arc<Self>, append: Append) -> Ticket {
        let deadline = append.at + self.config.give_up_after;
        if self.append_until(&append, deadline).await.is_some() {
            metrics::counter!(APPENDS_TOTAL).increment(1);
            metrics::histogram!(ACK_WAIT_SECONDS).record(append.at.elapsed().as_secs_f64());
        } else {
            metrics::counter!(APPEND_FAILURES_TOTAL, "reason" => "gave_up").increment(1);
            tracing::warn!(tenant = %append.tenant, id = %append.id, "JetStream did not keep a message in time; its acknowledgement was refused");
        }
        append.ticket
    }

    /// Attempts `append` until JetStream answered or `deadline` passed, each
    /// failed attempt counted and retried with a growing pause: whether the
    /// stream held its id already; `None` at the deadline.
    async fn append_until(&self, append: &Append, deadline: Instant) -> Option<bool> {
        let mut pause = Duration::from_millis(50);
        loop {
            let failed = match tokio::time::timeout_at(deadline, self.try_append(append)).await {
                Ok(Ok(duplicate)) => return Some(duplicate),
                Ok(Err(reason)) => reason,
                Err(_) => return None,
            };
            metrics::counter!(APPEND_FAILURES_TOTAL, "reason" => failed).increment(1);
            tracing::debug!(tenant = %append.tenant, reason = failed, "message log append failed; retrying");
            if Instant::now() + pause >= deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// One attempt: the tenant's stream opened, then a JetStream publish.
    /// `Ok(true)`: the stream held a message with this id already.
    async fn try_append(&self, append: &Append) -> Result<bool, &'static str> {
        self.open(&append.tenant).await?;
        let publish = PublishMessage::build()
            .payload(append.payload.clone())
            .message_id(&append.id);
        let acked = match self.js.send_publish(append.subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => Ok(ack.duplicate),
            Err(e) => Err(match e.kind() {
                PublishErrorKind::StreamNotFound => {
                    // No stream took it (deleted, or JetStream down): open
                    // it again at the next attempt.
                    self.opened.lock().remove(&append.tenant);
                    "no_stream"
                }
                PublishErrorKind::TimedOut => "timeout",
                _ => "jetstream",
            }),
        }
    }

    /// Makes the tenant's stream once per node (if missing).
    async fn open(&self, tenant: &Arc<str>) -> Result<(), &'static str> {
        let cell = self
            .opened
            .lock()
            .entry(tenant.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let stream = crate::replicas::open_stream(&self.js, self.stream_config(tenant)).await?;
            // Made by a gateway that knew other limits: it follows the plan.
            self.follow_retention(tenant, &stream.cached_info().config)
                .await;
            Ok::<_, String>(())
        })
        .await
        .map(|_| ())
        .map_err(|error| {
            tracing::warn!(%tenant, %error, "cannot open the tenant's message log");
            "stream_open"
        })
    }

    /// The retention `tenant`'s log keeps: its plan's, within the ceiling.
    fn retention_of(&self, tenant: &str) -> Retention {
        self.retention
            .lock()
            .get(tenant)
            .copied()
            .unwrap_or(self.config.retention)
    }

    /// Updates `tenant`'s stream (whose config is `current`) to the
    /// retention its plan says, if it keeps another. A failure is logged:
    /// the stream keeps its own, and the next change or open tries again.
    async fn follow_retention(&self, tenant: &str, current: &stream::Config) {
        let wanted = self.retention_of(tenant);
        if current.max_age == wanted.max_age && current.max_bytes == wanted.max_bytes_i64() {
            return;
        }
        let config = stream::Config {
            max_age: wanted.max_age,
            max_bytes: wanted.max_bytes_i64(),
            duplicate_window: DUPLICATE_WINDOW.min(wanted.max_age),
            ..current.clone()
        };
        match self.js.update_stream(config).await {
            Ok(_) => {
                tracing::info!(%tenant, max_age_s = wanted.max_age.as_secs(), max_bytes = wanted.max_bytes, "the tenant's message log follows its plan's retention");
            }
            Err(error) => {
                tracing::warn!(%tenant, %error, "cannot change the retention of the tenant's message log");
            }
        }
    }

    /// After a plan change: the stream, if this node opened it, follows.
    async fn retention_changed(&self, tenant: &str) {
        let opened = self
            .opened
            .lock()
            .get(tenant)
            .is_some_and(|cell| cell.initialized());
        if !opened {
            return;
        }
        match self
            .js
            .get_stream(stream_name(&self.config.prefix, tenant))
            .await
        {
            Ok(stream) => {
                self.follow_retention(tenant, &stream.cached_info().config)
                    .await;
            }
            Err(error) => {
                tracing::warn!(%tenant, %error, "cannot read the tenant's message log to change its retention");
            }
        }
    }

    fn stream_config(&self, tenant: &str) -> stream::Config {
        let retention = self.retention_of(tenant);
        stream::Config {
            name: stream_name(&self.config.prefix, tenant),
            description: Some("Aerie: a tenant's QoS 1/2 messages, by topic".into()),
            subjects: vec![format!("{}.>", self.subjects.tenant_root(tenant))],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: retention.max_age,
            max_bytes: retention.max_bytes_i64(),
            duplicate_window: DUPLICATE_WINDOW.min(retention.max_age),
            allow_direct: true,
            num_replicas: crate::replicas::wanted(&self.client, self.config.replicas),
            ..Default::default()
        }
    }
}

/// The store `aerie gateway` runs: nothing kept on the node; durable as far
/// as the log is (see [`JetStreamLog::acks`]).
struct LogTickets(Arc<Shared>);

impl Store for LogTickets {
    fn submit(&self, _op: StoreOp) -> Ticket {
        0
    }
    fn durable(&self) -> watch::Receiver<Ticket> {
        self.0.durable.subscribe()
    }
    fn is_persistent(&self) -> bool {
        false
    }
    fn is_backlogged(&self) -> bool {
        self.0.pending.load(Ordering::Relaxed) > BACKLOGGED_AT
    }
}
