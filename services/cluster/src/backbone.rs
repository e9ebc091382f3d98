//! [`NatsBackbone`]: the core's message backbone over core NATS.
//!
//! - **Publish:** one NATS message per PUBLISH on the topic's subject
//!   ([`Subjects`]), the message in the core's codec, this node in a header.
//!   One queue and one task send them on the node's one connection, so
//!   order per publisher and topic is kept. `$`-topics (the node's own
//!   `$SYS` figures) stay on their node.
//! - **Interest:** counted per (tenant, filter, group): one NATS
//!   subscription per subject of each distinct filter this node's clients
//!   hold, dropped [`LINGER`] after the last holder left (so churn does
//!   not thrash). A new interest is live once the server has read the SUB (a round
//!   trip after it): the
//!   future [`Backbone::interest`] returns (and the SUBACK) waits for that.
//! - **Inbound:** one task reads every subscription, drops what this node
//!   published (delivered here already), delivers each message once even
//!   when several of the node's filters match it (message ids seen
//!   recently), to the tenant's `Router::deliver_to_subscribers`.
//! - **Shared subscriptions:** `$share/g/f` is a NATS queue group named for
//!   tenant, group and filter (two filters of one group are two shared
//!   subscriptions), one queue subscription per node: NATS gives each
//!   message to one node, which gives it to one of its members
//!   (`Router::deliver_to_group`), its own messages included. So the
//!   publishing node never serves groups itself
//!   ([`Backbone::routes_shared_groups`]): a group whose members are all
//!   local costs a round trip through NATS, and NATS balances per node,
//!   not per member (a node with one member gets as much as one with ten).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aerie_core::message::{Persisted, codec};
use aerie_core::seams::{Backbone, BoxFuture};
use aerie_core::{Broker, Message, MessageId, NodeId};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::subjects::{Subjects, escape};

/// Messages sent to the backbone.
pub const PUBLISHED_TOTAL: &str = "aerie_backbone_published_total";
/// Messages of other nodes received from the backbone.
pub const RECEIVED_TOTAL: &str = "aerie_backbone_received_total";
/// Received messages that did not decode (dropped).
pub const DECODE_FAILURES_TOTAL: &str = "aerie_backbone_decode_failures_total";
/// Messages not sent, by `reason`: `queue_full`, `too_large`,
/// `subject_too_long`, `nats`.
pub const DROPPED_TOTAL: &str = "aerie_backbone_dropped_total";
/// NATS subscriptions this node holds for its clients' filters.
pub const SUBSCRIPTIONS: &str = "aerie_backbone_subscriptions";
/// Seconds from a message's hand-off to NATS on its node to its receipt
/// from NATS on another (sampled: the sender stamps its first message and
/// every [`LATENCY_SAMPLE`]th). Wall clocks of two hosts: their skew adds
/// to it.
pub const LATENCY_SECONDS: &str = "aerie_backbone_latency_seconds";

/// The header naming the publishing node.
const NODE_HEADER: &str = "Aerie-Node";
/// The header with the time a sampled message was handed to NATS, Unix
/// microseconds: what [`LATENCY_SECONDS`] measures from.
const SENT_HEADER: &str = "Aerie-Sent-Us";
/// One message in this many carries [`SENT_HEADER`]: the clock read and
/// the header's text stay off the per-message path.
const LATENCY_SAMPLE: u64 = 64;
/// How long a NATS subscription outlives its last local holder.
pub const LINGER: Duration = Duration::from_secs(3);
/// The longest a SUBACK waits for NATS (disconnected: the subscription is
/// live locally at once and on NATS when the client reconnects).
const LIVE_WAIT: Duration = Duration::from_secs(5);
/// Messages waiting to be sent; past it they are dropped and counted.
const OUTBOUND_QUEUE: usize = 65_536;
/// NATS servers refuse control lines over 4 KiB (and close the connection):
/// a topic whose subject is longer is not sent.
pub(crate) const MAX_SUBJECT: usize = 3_072;
/// Message ids remembered to deliver a message once when several of the
/// node's subscriptions match it (its copies arrive back to back).
const SEEN_PER_GENERATION: usize = 16_384;

/// The core's backbone over NATS (see the module doc).
pub struct NatsBackbone {
    client: Client,
    node: String,
    prefix: String,
    /// A subject nobody subscribes to: a request there is a round trip.
    barrier: String,
    subjects: Subjects,
    outbound: mpsc::Sender<(String, Bytes)>,
    /// Publishers waiting for room in `outbound` (`Backbone::backlogged`).
    room: Arc<Room>,
    /// Shared with the linger timers.
    interests: Arc<Mutex<HashMap<Key, Interest>>>,
    streams: mpsc::UnboundedSender<Subscription>,
    shutdown: CancellationToken,
}

/// Room in the send queue, for the publishers that wait for it: their
/// connections are woken when the sender has taken the queue down to half.
#[derive(Default)]
struct Room {
    waiting: std::sync::atomic::AtomicBool,
    waiters: Mutex<Vec<std::sync::Weak<aerie_core::Session>>>,
}

impl Room {
    fn wake_all(&self) {
        self.waiting
            .store(false, std::sync::atomic::Ordering::Release);
        for waiter in std::mem::take(&mut *self.waiters.lock()) {
            if let Some(session) = waiter.upgrade() {
                session.wake_connection();
            }
        }
    }
}

/// Past this many queued messages a publisher waits (`Backbone::backlogged`);
/// it is woken once the queue is down to half of the queue's size.
const BACKLOGGED_AT: usize = OUTBOUND_QUEUE * 3 / 4;

/// What an inbound message is for.
#[derive(Debug, Clone)]
enum Route {
    /// The tenant's non-shared subscriptions on this node.
    Subscribers(Arc<str>),
    /// One member of `$share/<group>/<filter>` on this node.
    Group {
        tenant: Arc<str>,
        group: Arc<str>,
        filter: Arc<str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant: Arc<str>,
    filter: Box<str>,
    group: Option<Box<str>>,
}

struct Interest {
    holders: usize,
    /// Bumped at each release, so a linger timer knows whether it is the last.
    released: u64,
    live: watch::Receiver<bool>,
    /// Ends the interest's subscriptions.
    stop: CancellationToken,
}

/// A NATS subscription on its way to the inbound task.
struct Subscription {
    route: Route,
    subscriber: async_nats::Subscriber,
    stop: CancellationToken,
}

/// The inbound half: run it with the broker (see [`NatsBackbone::start`]).
pub struct Inbound {
    backbone: Arc<NatsBackbone>,
    streams: mpsc::UnboundedReceiver<Subscription>,
}

impl NatsBackbone {
    /// The backbone of node `node` on `client`, its subjects under `prefix`;
    /// its tasks end with `shutdown`. Start the returned [`Inbound`] once the
    /// broker exists.
    pub fn start(
        client: Client,
        prefix: &str,
        node: NodeId,
        shutdown: CancellationToken,
    ) -> (Arc<NatsBackbone>, Inbound) {
        let node = format!("{:016x}", node.0);
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, node.as_str());
        let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
        let room = Arc::new(Room::default());
        let (streams, streams_rx) = mpsc::unbounded_channel();
        let barrier = format!("{prefix}.barrier.{node}");
        let backbone = Arc::new(NatsBackbone {
            client: client.clone(),
            node,
            barrier,
            prefix: prefix.to_string(),
            subjects: Subjects::new(prefix, "t"),
            outbound,
            room: room.clone(),
            interests: Arc::default(),
            streams,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(send(client, headers, queue, room, shutdown));
        let inbound = Inbound {
            backbone: backbone.clone(),
            streams: streams_rx,
        };
        (backbone, inbound)
    }

    /// The NATS queue group of a shared subscription: tenant, group and
    /// filter, each one token.
    fn queue_group(&self, tenant: &str, group: &str, filter: &str) -> String {
        let mut q = format!("{}.g.", self.prefix);
        escape(tenant, &mut q);
        q.push('.');
        escape(group, &mut q);
        q.push('.');
        escape(filter, &mut q);
        q
    }

    fn hold(&self, key: Key) -> Option<BoxFuture<()>> {
        let mut interests = self.interests.lock();
        if let Some(interest) = interests.get_mut(&key) {
            interest.holders += 1;
            return wait_live(interest.live.clone());
        }
        let (live_tx, live) = watch::channel(false);
        let stop = self.shutdown.child_token();
        let subjects = self.subjects.filter(&key.tenant, &key.filter);
        let (route, queue) = match &key.group {
            None => (Route::Subscribers(key.tenant.clone()), None),
            Some(group) => (
                Route::Group {
                    tenant: key.tenant.clone(),
                    group: Arc::from(&**group),
                    filter: Arc::from(&*key.filter),
                },
                Some(self.queue_group(&key.tenant, group, &key.filter)),
            ),
        };
        tokio::spawn(subscribe(
            self.client.clone(),
            self.barrier.clone(),
            self.streams.clone(),
            subjects,
            queue,
            route,
            stop.clone(),
            live_tx,
        ));
        interests.insert(
            key,
            Interest {
                holders: 1,
                released: 0,
                live: live.clone(),
                stop,
            },
        );
        wait_live(live)
    }

    fn release(&self, key: Key) {
        let mut interests = self.interests.lock();
        let Some(interest) = interests.get_mut(&key) else {
            return;
        };
        interest.holders = interest.holders.saturating_sub(1);
        if interest.holders > 0 {
            return;
        }
        interest.released += 1;
        let released = interest.released;
        let all = self.interests.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut interests = all.lock();
            if interests
                .get(&key)
                .is_some_and(|i| i.holders == 0 && i.released == released)
                && let Some(gone) = interests.remove(&key)
            {
                gone.stop.cancel();
            }
        });
    }
}

/// `None` when live already, else a future that resolves when it is.
fn wait_live(mut live: watch::Receiver<bool>) -> Option<BoxFuture<()>> {
    if *live.borrow() {
        return None;
    }
    Some(Box::pin(async move {
        let _ = live.wait_for(|l| *l).await;
    }))
}

/// Subscribes to `subjects` (in `queue`), hands the subscriptions to the
/// inbound task, makes a round trip to the server (`barrier`: a subject
/// nobody subscribes to), then says the interest is live.
#[allow(clippy::too_many_arguments)]
async fn subscribe(
    client: Client,
    barrier: String,
    streams: mpsc::UnboundedSender<Subscription>,
    subjects: Vec<String>,
    queue: Option<String>,
    route: Route,
    stop: CancellationToken,
    live: watch::Sender<bool>,
) {
    for subject in subjects {
        let subscribed = match &queue {
            Some(q) => client.queue_subscribe(subject.clone(), q.clone()).await,
            None => client.subscribe(subject.clone()).await,
        };
        match subscribed {
            Ok(subscriber) => {
                metrics::gauge!(SUBSCRIPTIONS).increment(1.0);
                let _ = streams.send(Subscription {
                    route: route.clone(),
                    subscriber,
                    stop: stop.clone(),
                });
            }
            Err(error) => tracing::warn!(%error, %subject, "NATS subscribe failed"),
        }
    }
    // `Client::flush` only empties the socket's buffer. A request nobody
    // serves is a round trip: the server answers "no responders" once it
    // has read it, so after every SUB before it.
    match tokio::time::timeout(LIVE_WAIT, client.request(barrier, Bytes::new())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Ok(Err(error)) => tracing::warn!(%error, "NATS round trip after subscribe failed"),
        Err(_) => tracing::warn!("NATS round trip after subscribe timed out"),
    }
    live.send_replace(true);
}

/// Sends queued messages, in order, on the node's connection.
async fn send(
    client: Client,
    headers: HeaderMap,
    mut queue: mpsc::Receiver<(String, Bytes)>,
    room: Arc<Room>,
    shutdown: CancellationToken,
) {
    let mut sent = 0u64;
    loop {
        if room.waiting.load(std::sync::atomic::Ordering::Acquire)
            && queue.len() <= OUTBOUND_QUEUE / 2
        {
            room.wake_all();
        }
        let (subject, payload) = tokio::select! {
            next = queue.recv() => match next {
                Some(next) => next,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let mut headers = headers.clone();
        if sent.is_multiple_of(LATENCY_SAMPLE) {
            headers.insert(SENT_HEADER, unix_us().to_string().as_str());
        }
        sent += 1;
        match client.publish_with_headers(subject, headers, payload).await {
            Ok(()) => metrics::counter!(PUBLISHED_TOTAL).increment(1),
            Err(error) => {
                metrics::counter!(DROPPED_TOTAL, "reason" => "nats").increment(1);
                tracing::debug!(%error, "backbone publish failed");
            }
        }
    }
}

impl Backbone for NatsBackbone {
    fn publish(&self, tenant: &Arc<str>, message: &Arc<Message>) -> bool {
        if message.topic.starts_with('$') {
            return false;
        }
        let subject = self.subjects.topic(tenant, &message.topic);
        if subject.len() > MAX_SUBJECT {
            metrics::counter!(DROPPED_TOTAL, "reason" => "subject_too_long").increment(1);
            return false;
        }
        let payload = Bytes::from(codec::encode_to_vec(message));
        let max = self
            .client
            .try_server_info()
            .map_or(usize::MAX, |i| i.max_payload);
        if payload.len() > max {
            metrics::counter!(DROPPED_TOTAL, "reason" => "too_large").increment(1);
            return false;
        }
        if self.outbound.try_send((subject, payload)).is_err() {
            metrics::counter!(DROPPED_TOTAL, "reason" => "queue_full").increment(1);
            return false;
        }
        true
    }

    fn interest(
        &self,
        tenant: &Arc<str>,
        filter: &str,
        group: Option<&str>,
        held: bool,
    ) -> Option<BoxFuture<()>> {
        let key = Key {
            tenant: tenant.clone(),
            filter: filter.into(),
            group: group.map(Into::into),
        };
        if held {
            self.hold(key)
        } else {
            self.release(key);
            None
        }
    }

    fn routes_shared_groups(&self) -> bool {
        true
    }

    fn backlogged(&self, waiter: &Arc<aerie_core::Session>) -> bool {
        let queued = || OUTBOUND_QUEUE - self.outbound.capacity();
        if queued() < BACKLOGGED_AT {
            return false;
        }
        {
            let mut waiters = self.room.waiters.lock();
            let me = Arc::downgrade(waiter);
            if !waiters.iter().any(|w| w.ptr_eq(&me)) {
                waiters.push(me);
            }
        }
        self.room
            .waiting
            .store(true, std::sync::atomic::Ordering::Release);
        // The sender may have drained the queue between the check and the
        // flag (and then saw no one waiting): look again.
        if queued() <= OUTBOUND_QUEUE / 2 {
            self.room.wake_all();
        }
        true
    }
}

impl Inbound {
    /// Runs the inbound task: messages of the backbone to `broker`'s tenants.
    pub fn spawn(self, broker: Broker) {
        tokio::spawn(self.run(broker));
    }

    async fn run(mut self, broker: Broker) {
        let backbone = self.backbone.clone();
        let mut all: SelectAll<
            futures_util::stream::BoxStream<'static, (Route, async_nats::Message)>,
        > = SelectAll::new();
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                Some(s) = self.streams.recv() => {
                    let (route, held) = (s.route, HeldSubscription);
                    all.push(Box::pin(s.subscriber.take_until(s.stop.cancelled_owned()).map(move |m| {
                        // Counted while the stream lives (dropped with it).
                        let _alive = &held;
                        (route.clone(), m)
                    })));
                }
                Some((route, m)) = all.next(), if !all.is_empty() => {
                    backbone.deliver(&broker, route, m, &mut seen);
                }
                () = backbone.shutdown.cancelled() => return,
            }
        }
    }
}

/// Counts a NATS subscription for as long as its stream lives.
struct HeldSubscription;

impl Drop for HeldSubscription {
    fn drop(&mut self) {
        metrics::gauge!(SUBSCRIPTIONS).decrement(1.0);
    }
}

impl NatsBackbone {
    fn deliver(&self, broker: &Broker, route: Route, m: async_nats::Message, seen: &mut Seen) {
        let own = m
            .headers
            .as_ref()
            .and_then(|h| h.get(NODE_HEADER))
            .is_some_and(|n| n.as_str() == self.node);
        if own && matches!(route, Route::Subscribers(_)) {
            // Delivered to this node's subscribers when it was published.
            return;
        }
        let message = match codec::decode(&m.payload, Persisted::default()) {
            Ok(message) => Arc::new(message),
            Err(error) => {
                metrics::counter!(DECODE_FAILURES_TOTAL).increment(1);
                tracing::warn!(%error, subject = %m.subject, "backbone message does not decode");
                return;
            }
        };
        metrics::counter!(RECEIVED_TOTAL).increment(1);
        record_latency(&m);
        match route {
            Route::Subscribers(tenant) => {
                if !seen.first(message.id) {
                    return;
                }
                if let Some(t) = broker.existing_tenant(&tenant) {
                    t.router().deliver_to_subscribers(&message);
                }
            }
            Route::Group {
                tenant,
                group,
                filter,
            } => {
                if let Some(t) = broker.existing_tenant(&tenant) {
                    t.router().deliver_to_group(&message, &group, &filter);
                }
            }
        }
    }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Records how long `m` took from its node to here, when its sender
/// stamped it (one message in [`LATENCY_SAMPLE`]).
fn record_latency(m: &async_nats::Message) {
    static HISTOGRAM: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
    let sent_us = m
        .headers
        .as_ref()
        .and_then(|h| h.get(SENT_HEADER))
        .and_then(|v| v.as_str().parse::<u64>().ok());
    // A clock behind the sender's: no reading rather than a wrong one.
    if let Some(took) = sent_us.and_then(|sent| unix_us().checked_sub(sent)) {
        HISTOGRAM
            .get_or_init(|| metrics::histogram!(LATENCY_SECONDS))
            .record(took as f64 / 1e6);
    }
}

/// Message ids delivered lately, in two generations: the copies of one
/// message (one per matching subscription) arrive together, so remembering
/// the last 16 to 32 thousand is plenty.
#[derive(Default)]
struct Seen {
    now: HashSet<MessageId>,
    before: HashSet<MessageId>,
}

impl Seen {
    /// True the first time `id` is seen.
    fn first(&mut self, id: MessageId) -> bool {
        if self.before.contains(&id) || !self.now.insert(id) {
            return false;
        }
        if self.now.len() >= SEEN_PER_GENERATION {
            self.before = std::mem::take(&mut self.now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> MessageId {
        MessageId {
            node: NodeId(7),
            seq,
        }
    }

    #[test]
    fn a_message_is_first_seen_once_across_a_generation_change() {
        let mut seen = Seen::default();
        assert!(seen.first(id(0)));
        assert!(!seen.first(id(0)));
        for seq in 1..SEEN_PER_GENERATION as u64 {
            assert!(seen.first(id(seq)));
        }
        // The generation turned over: what it held is still known.
        assert!(!seen.first(id(0)));
        assert!(!seen.first(id(SEEN_PER_GENERATION as u64 - 1)));
        assert!(seen.first(id(u64::MAX)));
    }
}
