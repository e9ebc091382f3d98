//! A session: what the broker keeps for one client id of one tenant, whether
//! or not a connection is attached.
//!
//! Publishers push deliveries into the session's queue under a short lock and
//! wake the attached connection; the connection drains the queue. The
//! per-connection protocol state (outbound in-flight window, inbound QoS 2
//! packet ids, the next packet id) is moved into the connection task while it is
//! attached, so acknowledgements take no lock, and moved back when it detaches.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aerie_proto::{QoS, ReasonCode, SubscriptionOptions, Will};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;

use crate::config::CoreConfig;
pub use crate::flight::{FlightState, OutFlight};
use crate::message::{Delivery, Message, MessageId};
use crate::metrics::{DropReason, count_drop};
use crate::small_map::SmallMap;
use crate::store::{QueuedRecord, SessionRecord, Store, StoreOp, Ticket, unix_ms_now};

/// A subscription as the session remembers it (for resume and unsubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// Why an attached connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    /// The v5 DISCONNECT reason code.
    pub reason: ReasonCode,
    /// A short snake_case cause: the disconnect metric's `why` label, and the
    /// DISCONNECT's reason string.
    pub why: &'static str,
}

impl Kick {
    pub const TAKEN_OVER: Kick = Kick {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        why: "taken_over",
    };
    pub const SERVER_SHUTTING_DOWN: Kick = Kick {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        why: "server_shutdown",
    };
}

/// A subscriber whose socket accepted nothing for this long is stuck, not
/// slow: publishers stop pausing for it and its queue overflows into drops.
/// Long enough for a slow reader's next read, short enough that a stuck one
/// costs its publishers at most their pacing budget once.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// A will waiting for its delay to pass (or its session to end).
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub will: Will,
    /// The attach generation it belongs to: a later attach cancels it.
    pub generation: u64,
}

/// Written only by the session's own methods: the tenant asks for a
/// transition (attach, detach, end, ...) and gets back what it must do.
#[derive(Debug, Default)]
struct SessionState {
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    pub subscriptions: SmallMap<Arc<str>, SubscriptionSpec>,
    pub expiry_interval: u32,
    /// The id of the attached connection, if any.
    pub owner: Option<u64>,
    /// Bumped by every attach; timers compare it to know whether they are stale.
    pub generation: u64,
    /// Kept here while no connection is attached (the attached connection
    /// owns it); 16 bytes while it has no flight.
    pub flight: FlightState,
    /// Boxed: rare, and inline it would add 200 bytes to every session.
    pub pending_will: Option<Box<PendingWill>>,
    pub ended: bool,
    /// A kick and waiters: rare, and 8 bytes while absent (`Rare`).
    rare: Option<Box<Rare>>,
    /// The last stored queue position handed out.
    pub next_seq: u64,
    /// The online queue refused a message since its connection last drained
    /// it: the queue is full, not just filling.
    pub overflowing: bool,
    /// Something was queued since `Session::caught_up_since_asked` last
    /// said so.
    pub queued_since_asked: bool,
}

/// What a session holds only now and then, boxed together (40 bytes inline
/// in every session otherwise) and freed once empty.
#[derive(Debug, Default)]
struct Rare {
    /// Set to ask the attached connection to close.
    kick: Option<Kick>,
    /// Publishers held back by this session's full queue, waiting for a
    /// drain (`Session::space`).
    space_waiters: Option<Arc<Notify>>,
    /// Connections waiting to take this session over (`Session::detached`).
    detach_waiters: Option<Arc<Notify>>,
}

impl SessionState {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// Takes what `take` takes from the rare part, freeing it once empty.
    fn take_rare<T>(&mut self, take: impl FnOnce(&mut Rare) -> Option<T>) -> Option<T> {
        let rare = self.rare.as_mut()?;
        let taken = take(rare);
        if rare.kick.is_none() && rare.space_waiters.is_none() && rare.detach_waiters.is_none() {
            self.rare = None;
        }
        taken
    }
}

/// What `Session::set_socket_waiting` counts from: one instant for all
/// sessions rather than 16 bytes in each.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

pub struct Session {
    pub id: u64,
    pub tenant: Arc<str>,
    pub client_id: Arc<str>,
    store: Arc<dyn Store>,
    state: Mutex<SessionState>,
    /// Wakes the attached connection: new deliveries, or a kick.
    wake: Wake,
    /// Since when the attached connection has had bytes its socket does not
    /// take (1 ms units: 49 days of stall, ample). An atomic, as the connection moves it once per
    /// write.
    socket_waiting_since: Stamp<1>,
    /// When this node received the oldest message the attached connection
    /// sent and its client has not acknowledged (1 s units). Moved by the connection once per batch; read
    /// by the session record's writer (scale-out), whose replay cursor must
    /// not pass it.
    in_flight_since: Stamp<1000>,
}

/// An optional moment in 32 bits (a session is in every connection:
/// `size_tests`): whole `UNIT_MS` units after [`EPOCH`], wrapping, plus one;
/// 0 for none. The age it gives is right for ages below 2³² units.
struct Stamp<const UNIT_MS: u64>(AtomicU32);

impl<const UNIT_MS: u64> Stamp<UNIT_MS> {
    const fn none() -> Self {
        Stamp(AtomicU32::new(0))
    }

    fn units(t: Instant) -> u32 {
        // Wrapping on purpose: only differences are read.
        (t.saturating_duration_since(*EPOCH).as_millis() as u64 / UNIT_MS) as u32
    }

    fn set(&self, t: Option<Instant>) {
        let raw = t.map_or(0, |t| Self::units(t).wrapping_add(1).max(1));
        self.0.store(raw, Ordering::Relaxed);
    }

    fn age(&self, now: Instant) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            raw => {
                let units = Self::units(now).wrapping_sub(raw - 1);
                Some(Duration::from_millis(u64::from(units) * UNIT_MS))
            }
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        id: u64,
        tenant: Arc<str>,
        client_id: Arc<str>,
        expiry_interval: u32,
        store: Arc<dyn Store>,
    ) -> Session {
        Session {
            id,
            tenant,
            client_id,
            store,
            state: Mutex::new(SessionState {
                expiry_interval,
                ..SessionState::default()
            }),
            wake: Wake::default(),
            socket_waiting_since: Stamp::none(),
            in_flight_since: Stamp::none(),
        }
    }

    /// Queues a delivery, or says why it was dropped (and counts the drop).
    /// A QoS 1/2 delivery to a persistent session is written to the store;
    /// the ticket says when that write is durable (0: nothing written).
    pub fn enqueue(&self, delivery: Delivery, config: &CoreConfig) -> Result<Enqueued, DropReason> {
        self.enqueue_limited(delivery, config, None)
    }

    /// [`Session::enqueue`], holding at most the tenant's `queued_messages`
    /// (`quota`'s) while the session is offline; a refusal is counted for
    /// the tenant.
    pub fn enqueue_limited(
        &self,
        mut delivery: Delivery,
        config: &CoreConfig,
        quota: Option<&crate::quota::Quota>,
    ) -> Result<Enqueued, DropReason> {
        let offline_limit = quota.map_or(usize::MAX, |q| {
            usize::try_from(q.queued_messages()).unwrap_or(usize::MAX)
        });
        let mut state = self.state.lock();
        let online = state.owner.is_some();
        let was_empty = state.queue.is_empty();
        let result = if state.ended {
            Err(DropReason::SessionEnded)
        } else if state.owner.is_none()
            && delivery.qos == QoS::AtMostOnce
            && !config.queue_qos0_offline
        {
            Err(DropReason::OfflineQos0)
        } else if state.queue.len() >= config.max_queued_messages
            || state.queued_bytes + delivery.message.weight() > config.max_queued_bytes
        {
            state.overflowing |= online;
            Err(DropReason::QueueFull)
        } else if !online && state.queue.len() >= offline_limit {
            if let Some(quota) = quota {
                quota.refused(crate::quota::Limit::QueuedMessages);
            }
            Err(DropReason::QueueFull)
        } else {
            let mut ticket = 0;
            if state.expiry_interval > 0
                && delivery.qos != QoS::AtMostOnce
                && self.store.is_persistent()
            {
                // Under the state lock, so it cannot interleave with the
                // session's deletion.
                state.next_seq += 1;
                let seq = state.next_seq;
                let message_id = delivery.message.persist(&self.store);
                ticket = self.store.submit(StoreOp::PutQueued {
                    tenant: self.tenant.clone(),
                    client_id: self.client_id.clone(),
                    record: QueuedRecord {
                        seq,
                        message_id,
                        qos: delivery.qos,
                        retain: delivery.retain,
                        subscription_ids: delivery.subscription_ids.clone(),
                    },
                });
                delivery.stored_seq = Some(seq);
            }
            state.queued_bytes += delivery.message.weight();
            state.queue.push_back(delivery);
            state.queued_since_asked = true;
            Ok(Enqueued {
                ticket,
                congested: online
                    && is_congested(&state, config)
                    && self.socket_stalled_for(Instant::now()) < STALLED_AFTER,
            })
        };
        drop(state);
        match result {
            // The connection drains the whole queue when woken, so only the
            // first message after a drain needs to wake it.
            Ok(_) if online && was_empty => self.wake.notify(),
            Ok(_) => {}
            Err(reason) => count_drop(reason, 1),
        }
        result
    }

    /// Whether an online session's queue is past three quarters of its
    /// limits; `space` is notified when its connection drains it.
    pub fn is_congested(&self, config: &CoreConfig) -> bool {
        let state = self.state.lock();
        state.owner.is_some() && is_congested(&state, config)
    }

    /// Whether a publisher should pause for this subscriber: congested, and
    /// its socket still takes bytes (a stuck one would only stall publishers).
    pub fn paces_publishers(&self, config: &CoreConfig, now: Instant) -> bool {
        self.socket_stalled_for(now) < STALLED_AFTER && self.is_congested(config)
    }

    /// Whether the online queue had to refuse a message since its connection
    /// last drained it.
    pub fn is_overflowing(&self) -> bool {
        self.state.lock().overflowing
    }

    /// The connection's word on its socket: `Some(t)`: bytes wait to be
    /// written and the socket last took some at `t`; `None`: nothing waits.
    pub fn set_socket_waiting(&self, since: Option<Instant>) {
        self.socket_waiting_since.set(since);
    }

    /// How long bytes have waited for the attached connection's socket
    /// without it taking any (zero while nothing waits).
    pub fn socket_stalled_for(&self, now: Instant) -> Duration {
        self.socket_waiting_since.age(now).unwrap_or_default()
    }

    /// The connection's word on its in-flight window: `Some(t)`: the oldest
    /// message its client has not acknowledged reached this node at `t`.
    pub fn set_in_flight_since(&self, since: Option<Instant>) {
        self.in_flight_since.set(since);
    }

    /// How long ago the oldest message the attached connection's client has
    /// not acknowledged reached this node, or a little more (never less);
    /// None: nothing in flight.
    pub fn in_flight_for(&self, now: Instant) -> Option<Duration> {
        // Both ends are rounded down to whole seconds: one more covers it.
        self.in_flight_since
            .age(now)
            .map(|age| age + Duration::from_secs(1))
    }

    /// How long ago the oldest delivery queued (not sent yet) reached this
    /// node (a replayed one: its log took it); None: nothing queued.
    pub fn queued_for(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock();
        let front = state.queue.front()?;
        Some(now.saturating_duration_since(front.message.received_at))
    }

    /// Resolves after the session's connection next drains its queue.
    pub fn space(&self) -> OwnedNotified {
        waiters(&mut self.state.lock().rare().space_waiters)
    }

    /// The client finished with a stored delivery: delete it from the store.
    pub fn forget(&self, stored_seq: Option<u64>) {
        if let Some(seq) = stored_seq {
            self.store.submit(StoreOp::DeleteQueued {
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
                seq,
            });
        }
    }

    /// Remembers an inbound QoS 2 packet id across restarts (persistent sessions).
    pub fn store_inbound_qos2(&self, packet_id: u16, keep: bool) -> Ticket {
        if self.state.lock().expiry_interval == 0 || !self.store.is_persistent() {
            return 0;
        }
        let (tenant, client_id) = (self.tenant.clone(), self.client_id.clone());
        self.store.submit(if keep {
            StoreOp::PutInboundQos2 {
                tenant,
                client_id,
                packet_id,
            }
        } else {
            StoreOp::DeleteInboundQos2 {
                tenant,
                client_id,
                packet_id,
            }
        })
    }

    /// Writes the session record (persistent sessions only).
    fn persist_record(&self, state: &SessionState, expires_at_ms: Option<u64>) -> Ticket {
        if state.expiry_interval == 0 || state.ended || !self.store.is_persistent() {
            return 0;
        }
        self.store.submit(StoreOp::PutSession {
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            record: SessionRecord {
                expiry_interval: state.expiry_interval,
                expires_at_ms,
                subscriptions: state
                    .subscriptions
                    .iter()
                    .map(|(f, s)| (f.clone(), *s))
                    .collect(),
            },
        })
    }

    /// Deletes everything stored for this session.
    fn delete_stored(&self) {
        if self.store.is_persistent() {
            self.store.submit(StoreOp::DeleteSession {
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
            });
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Moves queued deliveries into `out`, in order: every QoS 0 one, and QoS
    /// 1/2 ones while `window` (free in-flight slots) lasts. Stops at the first
    /// QoS 1/2 delivery that does not fit, so order is kept.
    pub fn drain(&self, mut window: usize, out: &mut Vec<Delivery>) {
        let mut drained = false;
        let mut state = self.state.lock();
        while let Some(front) = state.queue.front() {
            if front.qos != QoS::AtMostOnce {
                if window == 0 {
                    break;
                }
                window -= 1;
            }
            let d = state.queue.pop_front().expect("front exists");
            state.queued_bytes -= d.message.weight();
            out.push(d);
            drained = true;
        }
        state.overflowing &= !drained;
        let waiting = if drained {
            state.take_rare(|r| r.space_waiters.take())
        } else {
            None
        };
        drop(state);
        if let Some(publishers) = waiting {
            publishers.notify_waiters();
        }
    }

    pub fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether a connection is attached to it now.
    pub fn is_attached(&self) -> bool {
        self.state.lock().owner.is_some()
    }

    /// Asks the attached connection (if any) to close.
    pub fn kick(&self, kick: Kick) {
        let mut state = self.state.lock();
        if state.owner.is_some() {
            state.rare().kick = Some(kick);
            drop(state);
            self.wake.notify();
        }
    }

    /// Asks connection `connection_id` to close if it is still the attached
    /// one (not a newer connection that took the session over). Returns
    /// whether it was.
    pub fn kick_connection(&self, connection_id: u64, kick: Kick) -> bool {
        let mut state = self.state.lock();
        if state.owner != Some(connection_id) {
            return false;
        }
        state.rare().kick = Some(kick);
        drop(state);
        self.wake.notify();
        true
    }

    /// Wakes the attached connection's loop (it then looks again at what
    /// held it, such as a backlogged backbone).
    pub fn wake_connection(&self) {
        self.wake.notify();
    }

    /// Why the connection was asked to close, once.
    pub fn take_kick(&self) -> Option<Kick> {
        self.state.lock().take_rare(|r| r.kick.take())
    }

    /// Ready once something was queued or a kick arrived since the last
    /// time it was: for the attached connection's loop, the only one that
    /// waits on it.
    pub fn poll_woken(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.wake.poll(cx)
    }

    pub fn subscriptions(&self) -> Vec<(Arc<str>, SubscriptionSpec)> {
        self.state
            .lock()
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), *s))
            .collect()
    }

    /// How many subscriptions the session holds besides one on `filter`
    /// (what subscribing to `filter` would make it hold, minus one).
    pub fn subscriptions_besides(&self, filter: &str) -> usize {
        let state = self.state.lock();
        state.subscriptions.len() - usize::from(state.subscriptions.contains_key(filter))
    }

    pub fn expiry_interval(&self) -> u32 {
        self.state.lock().expiry_interval
    }

    pub fn set_expiry_interval(&self, secs: u32) {
        self.state.lock().expiry_interval = secs;
    }

    /// Makes connection `connection_id` the attached one, with the session's
    /// new expiry interval; hands it the protocol state. None when another
    /// connection holds it, or it ended (the caller starts over).
    pub(crate) fn attach_connection(
        &self,
        connection_id: u64,
        expiry_interval: u32,
    ) -> Option<FlightState> {
        let mut state = self.state.lock();
        if state.owner.is_some() || state.ended {
            return None;
        }
        state.owner = Some(connection_id);
        state.generation += 1;
        state.take_rare(|r| r.kick.take());
        state.overflowing = false;
        state.pending_will = None;
        let was_persistent = state.expiry_interval > 0;
        state.expiry_interval = expiry_interval;
        self.persist_record(&state, None);
        let flight = std::mem::take(&mut state.flight);
        drop(state);
        if was_persistent && expiry_interval == 0 {
            // Resumed as a session that ends at disconnect: nothing stays stored.
            self.delete_stored();
        }
        Some(flight)
    }

    /// Detaches connection `connection_id` (if it is still the attached
    /// one), taking back its protocol state. Deliveries of shared
    /// subscriptions (queued or unfinished) come back as orphans for another
    /// member; queued QoS 0 ones are dropped unless `keep_qos0`.
    pub(crate) fn detach_connection(
        &self,
        connection_id: u64,
        mut flight: FlightState,
        keep_qos0: bool,
    ) -> Option<Detached> {
        let mut state = self.state.lock();
        if state.owner != Some(connection_id) {
            return None;
        }
        state.owner = None;
        state.take_rare(|r| r.kick.take());
        // The clock was about the socket that is gone.
        self.set_socket_waiting(None);
        // A leaving member's unfinished shared-subscription messages go to
        // another member (MQTT 5 §4.8.2).
        let mut orphans: Vec<Delivery> = flight
            .extract(|f| matches!(f, OutFlight::Publish(d) if d.shared.is_some()))
            .into_iter()
            .filter_map(|f| match f {
                OutFlight::Publish(d) => Some(d),
                OutFlight::Released => None,
            })
            .collect();
        let mut kept = VecDeque::with_capacity(state.queue.len());
        let mut dropped_qos0 = 0;
        for d in std::mem::take(&mut state.queue) {
            if d.shared.is_some() {
                state.queued_bytes -= d.message.weight();
                orphans.push(d);
            } else if d.qos == QoS::AtMostOnce && !keep_qos0 {
                state.queued_bytes -= d.message.weight();
                dropped_qos0 += 1;
            } else {
                kept.push_back(d);
            }
        }
        state.queue = kept;
        if dropped_qos0 > 0 {
            count_drop(DropReason::OfflineQos0, dropped_qos0);
        }
        state.flight = flight;
        let expiry = state.expiry_interval;
        let generation = state.generation;
        let expires_at_ms = (expiry != u32::MAX).then(|| unix_ms_now() + u64::from(expiry) * 1000);
        self.persist_record(&state, expires_at_ms);
        let waiting = state.take_rare(|r| r.detach_waiters.take());
        drop(state);
        if let Some(takers) = waiting {
            takers.notify_waiters();
        }
        Some(Detached {
            orphans,
            expiry_interval: expiry,
            generation,
        })
    }

    /// Resolves once the attached connection detached. Enable it before
    /// checking [`Session::is_attached`], so a detach in between is not missed.
    pub(crate) fn detached(&self) -> OwnedNotified {
        waiters(&mut self.state.lock().rare().detach_waiters)
    }

    /// Keeps a will until its delay passes, unless attach `generation` is
    /// over by then.
    pub(crate) fn set_pending_will(&self, will: Will, generation: u64) {
        self.state.lock().pending_will = Some(Box::new(PendingWill { will, generation }));
    }

    /// The pending will, whatever its generation (the session is ending).
    pub(crate) fn take_pending_will(&self) -> Option<Will> {
        self.state.lock().pending_will.take().map(|p| p.will)
    }

    /// The pending will of attach `generation`, if the session is still
    /// detached since then.
    pub(crate) fn take_pending_will_of(&self, generation: u64) -> Option<Will> {
        let mut state = self.state.lock();
        match &state.pending_will {
            Some(p) if p.generation == generation && state.owner.is_none() => {
                state.pending_will.take().map(|p| p.will)
            }
            _ => None,
        }
    }

    /// Whether the session stayed detached since attach `generation` ended
    /// (its expiry timer is still the current one).
    pub(crate) fn detached_since(&self, generation: u64) -> bool {
        let state = self.state.lock();
        state.owner.is_none() && state.generation == generation && !state.ended
    }

    /// Ends the session: drops its queue, protocol state and stored data.
    /// Returns the filters it was subscribed to (to remove from the trie),
    /// or None if it had already ended.
    pub(crate) fn end(&self) -> Option<Vec<Arc<str>>> {
        let mut state = self.state.lock();
        if state.ended {
            return None;
        }
        state.ended = true;
        let filters: Vec<Arc<str>> = state.subscriptions.take_all().map(|(f, _)| f).collect();
        let dropped = state.queue.len() + state.flight.len();
        state.queue.clear();
        state.queued_bytes = 0;
        state.flight = FlightState::default();
        state.pending_will = None;
        drop(state);
        self.delete_stored();
        if dropped > 0 {
            count_drop(DropReason::SessionEnded, dropped as u64);
        }
        Some(filters)
    }

    /// Remembers a subscription (and writes the record of a persistent session).
    pub(crate) fn add_subscription(&self, filter: Arc<str>, spec: SubscriptionSpec) {
        let mut state = self.state.lock();
        state.subscriptions.insert(filter, spec);
        self.persist_record(&state, None);
    }

    /// Forgets a subscription; false when there was none.
    pub(crate) fn remove_subscription(&self, filter: &str) -> bool {
        let mut state = self.state.lock();
        let removed = state.subscriptions.remove(filter).is_some();
        if removed {
            self.persist_record(&state, None);
        }
        removed
    }

    /// Puts `replayed` (oldest first, from another node's record) before
    /// what the session queued meanwhile, skipping messages queued already;
    /// then keeps the newest `limit` at most. The number dropped (counted
    /// as a full queue, like any offline overflow).
    pub(crate) fn queue_replayed(&self, replayed: Vec<Delivery>, limit: usize) -> usize {
        let mut state = self.state.lock();
        let queued: std::collections::HashSet<crate::message::MessageId> =
            state.queue.iter().map(|d| d.message.id).collect();
        let mut queue: VecDeque<Delivery> = replayed
            .into_iter()
            .filter(|d| !queued.contains(&d.message.id))
            .collect();
        queue.extend(std::mem::take(&mut state.queue));
        let dropped = queue.len().saturating_sub(limit);
        queue.drain(..dropped);
        state.queued_bytes = queue.iter().map(|d| d.message.weight()).sum();
        state.queued_since_asked |= !queue.is_empty();
        state.queue = queue;
        drop(state);
        if dropped > 0 {
            for _ in 0..dropped {
                crate::quota::Limit::QueuedMessages.count();
            }
            count_drop(DropReason::QueueFull, dropped as u64);
        }
        dropped
    }

    /// Whether something was queued since the last call that said so, and
    /// the session now holds no delivery its client has not acknowledged
    /// that this node can see (none queued, nor, detached, in flight; while
    /// a connection is attached its in-flight window is the connection's):
    /// a record of how far the session got may move on to the present. An
    /// idle session says false: its record has nothing new to say.
    pub fn caught_up_since_asked(&self) -> bool {
        let mut state = self.state.lock();
        if !state.queue.is_empty() || (state.owner.is_none() && !state.flight.is_empty()) {
            return false;
        }
        std::mem::take(&mut state.queued_since_asked)
    }

    /// Puts back a stored session's state, detached, as attach generation 1.
    pub(crate) fn restore(
        &self,
        subscriptions: &[(Arc<str>, SubscriptionSpec)],
        queue: Vec<(QueuedRecord, Arc<Message>)>,
        inbound_qos2: Vec<u16>,
    ) {
        let mut state = self.state.lock();
        state.subscriptions.extend(subscriptions.iter().cloned());
        for (record, message) in queue {
            state.next_seq = state.next_seq.max(record.seq);
            state.queued_bytes += message.weight();
            state.queue.push_back(Delivery {
                message,
                qos: record.qos,
                retain: record.retain,
                subscription_ids: record.subscription_ids,
                shared: None,
                stored_seq: Some(record.seq),
            });
        }
        state.flight.restore_inbound_qos2(inbound_qos2);
        state.generation = 1;
    }

    /// Flights another node's record says the client had not finished
    /// (a resume from it), in send order: the attaching connection resends
    /// them.
    pub(crate) fn restore_flights(&self, flights: Vec<(u16, OutFlight)>) {
        let mut state = self.state.lock();
        for (packet_id, flight) in flights {
            state.flight.insert(packet_id, flight);
        }
    }

    /// Inbound QoS 2 ids that another node recorded before routing their
    /// messages (a resume from its record).
    pub(crate) fn restore_recorded_qos2(&self, ids: Vec<(u16, MessageId)>) {
        self.state.lock().flight.restore_recorded_qos2(ids);
    }
}

/// A future that resolves at the next `notify_waiters` of `slot`'s
/// `Notify`, made on demand. Made under the session's lock, which the
/// notifier takes too: a `Notified` counts the `notify_waiters` calls after
/// its creation, so none is missed between this and the caller's check.
/// Most sessions never have a waiter, so they hold a `None` (8 bytes)
/// instead of a `Notify` (32), and a drain with nobody waiting takes no
/// `Notify` lock.
fn waiters(slot: &mut Option<Arc<Notify>>) -> OwnedNotified {
    Arc::clone(slot.get_or_insert_with(Default::default)).notified_owned()
}

/// A wake-up for one waiter that may come before it waits (then its next
/// poll is ready at once), like `Notify::notify_one`. A flag and a waker:
/// the waiter holds no future of its own across loop turns, where a
/// `Notified` is 80 bytes in every connection's task.
#[derive(Default)]
struct Wake {
    pending: std::sync::atomic::AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl Wake {
    fn notify(&self) {
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::sync::atomic::Ordering::Acquire;
        if self.pending.swap(false, Acquire) {
            return std::task::Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notify between the swap and the register woke no one: look again.
        if self.pending.swap(false, Acquire) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// What detaching a connection left to do, from [`Session::detach_connection`].
#[derive(Debug)]
pub(crate) struct Detached {
    /// Shared-subscription deliveries for another member.
    pub orphans: Vec<Delivery>,
    /// The session's final expiry interval (0: it ends now).
    pub expiry_interval: u32,
    /// The attach generation that just ended: timers compare it.
    pub generation: u64,
}

/// A delivery that was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// Durable once the store reaches it (0: nothing was written).
    pub ticket: Ticket,
    /// The (online) session's queue is filling up while its socket still
    /// takes bytes: the publisher may wait a little for it to drain before
    /// sending more (backpressure, before drops).
    pub congested: bool,
}

fn is_congested(state: &SessionState, config: &CoreConfig) -> bool {
    state.queue.len() * 4 > config.max_queued_messages * 3
        || state.queued_bytes * 4 > config.max_queued_bytes * 3
}

/// A session as a key in the subscription trie: compared by id, carrying the
/// `Arc` so routing needs no second lookup.
#[derive(Debug, Clone)]
pub struct SessionRef(pub Arc<Session>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for SessionRef {}
impl Hash for SessionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}
impl PartialOrd for SessionRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SessionRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_before_the_wait_is_kept_and_one_during_it_wakes_the_waiter() {
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let wake = Wake::default();
        assert!(wake.poll(&mut cx).is_pending());
        wake.notify();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(wake.poll(&mut cx).is_ready());
        assert!(wake.poll(&mut cx).is_pending(), "one notify, one wake-up");
        wake.notify();
        wake.notify();
        assert!(wake.poll(&mut cx).is_ready());
        assert!(wake.poll(&mut cx).is_pending());
    }
    use crate::message::Message;
    use tokio::time::Instant;

    fn delivery(qos: QoS) -> Delivery {
        Delivery {
            message: Message::published(
                "t".into(),
                bytes::Bytes::from_static(b"x"),
                qos,
                false,
                Default::default(),
                Default::default(),
                Default::default(),
            ),
            qos,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            stored_seq: None,
        }
    }

    fn session() -> Session {
        Session::new(
            1,
            "t".into(),
            "c".into(),
            60,
            Arc::new(crate::store::NullStore::new()),
        )
    }

    /// A session record's cursor moves only after deliveries: an idle
    /// session must not cost a record write every tick.
    #[test]
    fn an_idle_session_has_not_caught_up_with_anything_and_a_drained_one_has_once() {
        let session = session();
        let config = CoreConfig::default();
        assert!(!session.caught_up_since_asked(), "nothing was ever queued");
        session
            .enqueue(delivery(QoS::AtLeastOnce), &config)
            .unwrap();
        assert!(
            !session.caught_up_since_asked(),
            "a delivery is still queued"
        );
        let mut out = Vec::new();
        session.drain(10, &mut out);
        assert!(session.caught_up_since_asked());
        assert!(!session.caught_up_since_asked(), "said once");
    }

    /// A delivery of the message `seq` of node 0 on topic `seq`.
    fn numbered(seq: u64) -> Delivery {
        let mut d = delivery(QoS::AtLeastOnce);
        d.message = Message::published(
            seq.to_string().into(),
            bytes::Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            Default::default(),
            Default::default(),
            crate::message::MessageId {
                seq,
                ..Default::default()
            },
        );
        d
    }

    #[test]
    fn a_replay_goes_before_live_deliveries_once_each_and_keeps_the_newest() {
        let s = session();
        let cfg = CoreConfig::default();
        // Live while the replay was read: 4, and 3 (which the replay has too).
        s.enqueue(numbered(3), &cfg).expect("queued");
        s.enqueue(numbered(4), &cfg).expect("queued");
        let dropped = s.queue_replayed((1..=3).map(numbered).collect(), 3);
        assert_eq!(dropped, 1, "the oldest of four");
        let mut out = Vec::new();
        s.drain(usize::MAX, &mut out);
        let seqs: Vec<u64> = out.iter().map(|d| d.message.id.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn offline_qos0_is_dropped_by_default_and_qos1_is_queued() {
        let s = session();
        let cfg = CoreConfig::default();
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce), &cfg),
            Err(DropReason::OfflineQos0)
        );
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce), &cfg)
                .map(|e| e.ticket),
            Ok(0)
        );
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn queue_limit_drops_new_messages() {
        let s = session();
        let cfg = CoreConfig {
            max_queued_messages: 2,
            ..CoreConfig::default()
        };
        assert!(s.enqueue(delivery(QoS::AtLeastOnce), &cfg).is_ok());
        assert!(s.enqueue(delivery(QoS::AtLeastOnce), &cfg).is_ok());
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce), &cfg),
            Err(DropReason::QueueFull)
        );
    }

    #[test]
    fn the_tenants_offline_limit_bounds_only_an_offline_queue() {
        let s = session();
        let cfg = CoreConfig::default();
        let tenant_quota = crate::quota::Quota::new(crate::quota::TenantLimits {
            queued_messages: 3,
            ..crate::quota::TenantLimits::UNLIMITED
        });
        let quota = Some(&tenant_quota);
        for _ in 0..3 {
            assert!(
                s.enqueue_limited(delivery(QoS::AtLeastOnce), &cfg, quota)
                    .is_ok()
            );
        }
        assert_eq!(
            s.enqueue_limited(delivery(QoS::AtLeastOnce), &cfg, quota),
            Err(DropReason::QueueFull)
        );
        assert_eq!(s.queued(), 3);
        let refused: u64 = tenant_quota
            .refusals()
            .filter(|(l, _)| *l == crate::quota::Limit::QueuedMessages)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(refused, 1, "the refusal is the tenant's");
        s.attach_connection(1, 60).unwrap();
        assert!(
            s.enqueue_limited(delivery(QoS::AtLeastOnce), &cfg, quota)
                .is_ok(),
            "online"
        );
    }

    #[test]
    fn online_queue_past_three_quarters_is_congested_offline_never() {
        let s = session();
        let cfg = CoreConfig {
            max_queued_messages: 8,
            ..CoreConfig::default()
        };
        for _ in 0..7 {
            assert!(
                !s.enqueue(delivery(QoS::AtLeastOnce), &cfg)
                    .unwrap()
                    .congested,
                "offline"
            );
        }
        let s = session();
        s.attach_connection(1, 60).unwrap();
        let congested: Vec<bool> = (0..8)
            .map(|_| {
                s.enqueue(delivery(QoS::AtLeastOnce), &cfg)
                    .unwrap()
                    .congested
            })
            .collect();
        assert_eq!(
            congested,
            [false, false, false, false, false, false, true, true]
        );
        assert!(s.is_congested(&cfg));
    }

    #[tokio::test(start_paused = true)]
    async fn a_congested_subscriber_whose_socket_takes_nothing_paces_no_publisher() {
        let s = session();
        s.attach_connection(1, 60).unwrap();
        let cfg = CoreConfig {
            max_queued_messages: 8,
            ..CoreConfig::default()
        };
        for _ in 0..7 {
            s.enqueue(delivery(QoS::AtLeastOnce), &cfg).unwrap();
        }
        assert!(s.paces_publishers(&cfg, Instant::now()), "slow, not stuck");
        s.set_socket_waiting(Some(Instant::now()));
        tokio::time::advance(STALLED_AFTER / 2).await;
        assert!(s.paces_publishers(&cfg, Instant::now()), "waiting briefly");
        tokio::time::advance(STALLED_AFTER).await;
        assert!(!s.paces_publishers(&cfg, Instant::now()), "stuck");
        assert!(
            !s.enqueue(delivery(QoS::AtLeastOnce), &cfg)
                .unwrap()
                .congested,
            "publishers are not told to wait for it"
        );
        // The socket took bytes again: it is slow, not stuck.
        s.set_socket_waiting(Some(Instant::now()));
        assert!(s.paces_publishers(&cfg, Instant::now()));
        s.set_socket_waiting(None);
        assert_eq!(s.socket_stalled_for(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn an_online_queue_overflows_until_its_connection_drains_it() {
        let s = session();
        s.attach_connection(1, 60).unwrap();
        let cfg = CoreConfig {
            max_queued_messages: 2,
            ..CoreConfig::default()
        };
        for _ in 0..2 {
            s.enqueue(delivery(QoS::AtMostOnce), &cfg).unwrap();
        }
        assert!(!s.is_overflowing(), "full, nothing refused yet");
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce), &cfg),
            Err(DropReason::QueueFull)
        );
        assert!(s.is_overflowing());
        s.drain(0, &mut Vec::new());
        assert!(!s.is_overflowing(), "drained");
    }

    #[tokio::test]
    async fn draining_wakes_a_held_back_publisher() {
        let s = Arc::new(session());
        s.attach_connection(1, 60).unwrap();
        let cfg = CoreConfig::default();
        s.enqueue(delivery(QoS::AtLeastOnce), &cfg).unwrap();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.space().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.drain(10, &mut Vec::new());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn drain_respects_window_and_keeps_order() {
        let s = session();
        s.attach_connection(7, 60).unwrap();
        let cfg = CoreConfig::default();
        for q in [
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
            QoS::AtMostOnce,
            QoS::ExactlyOnce,
            QoS::AtMostOnce,
        ] {
            s.enqueue(delivery(q), &cfg).unwrap();
        }
        let mut out = Vec::new();
        s.drain(1, &mut out);
        let qos: Vec<_> = out.iter().map(|d| d.qos).collect();
        assert_eq!(qos, [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtMostOnce]);
        assert_eq!(s.queued(), 2);
    }
}

#[cfg(test)]
mod size_tests {
    use std::time::Duration;

    #[test]
    fn a_stamp_gives_the_age_of_its_moment_in_its_units() {
        let stamp = super::Stamp::<1000>::none();
        assert_eq!(stamp.age(tokio::time::Instant::now()), None);
        let now = tokio::time::Instant::now() + Duration::from_secs(10);
        stamp.set(Some(now - Duration::from_secs(3)));
        let age = stamp.age(now).expect("set");
        assert!(
            (Duration::from_secs(2)..=Duration::from_secs(3)).contains(&age),
            "{age:?}"
        );
        stamp.set(None);
        assert_eq!(stamp.age(now), None);
    }

    /// A session is in every connection, online or not: 240 bytes keep
    /// its allocation (with the `Arc`'s counts) in the allocator's 256-byte
    /// class, where 241 would take 320.
    #[test]
    fn a_session_fits_in_256_bytes_with_its_arc_counts() {
        assert!(
            size_of::<super::Session>() <= 240,
            "{}",
            size_of::<super::Session>()
        );
    }
}
