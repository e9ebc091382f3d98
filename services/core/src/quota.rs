//! Per-tenant limits (the tenant's plan) and the shared state that enforces
//! them: live connections, and GCRA rate limiters for connects and publishes.
//!
//! Limits are plain atomics, read with `Relaxed` loads on the message path
//! and replaced whole when the control plane changes them (a torn read across
//! fields during a change is harmless). Rates are GCRA on one atomic each,
//! with a burst of one second's worth; the rate is passed at each check, so a
//! change applies at the next packet with no limiter to rebuild.
//!
//! The tenant-wide rates are checked at this process's share of them: the
//! whole rate in the embedded shape; in the scale-out shape
//! (`aerie_cluster::ClusterConnections`) the publish rates at the part its
//! gateway holds of the tenant's connections ([`Quota::set_publish_share`])
//! and the connect rate at one gateway's part
//! ([`TenantConnections::connect_rate_share`]), so the gateways' shares add
//! up to the plan.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::message::Message;
use crate::retained::RetainedMap;
use crate::seams::BoxFuture;
use crate::tenant::Tenant;

/// Counted once per refusal (or clamp) by `limit`.
pub const LIMIT_EXCEEDED_TOTAL: &str = "aerie_limit_exceeded_total";

/// One tenant's limits. [`TenantLimits::UNLIMITED`] for a tenant the
/// control plane does not know (the anonymous tenant): only the global
/// configuration bounds it then.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TenantLimits {
    /// Live MQTT connections.
    pub connections: u32,
    /// Authenticated CONNECTs per second.
    pub connect_rate: u32,
    /// PUBLISH packets per second, tenant-wide.
    pub publish_rate_msgs: u32,
    /// PUBLISH payload bytes per second, tenant-wide.
    pub publish_rate_bytes: u64,
    /// PUBLISH packets per second, per client.
    pub client_publish_rate_msgs: u32,
    /// PUBLISH payload bytes per second, per client.
    pub client_publish_rate_bytes: u64,
    /// Largest packet a client may send.
    pub max_packet_size: u32,
    pub subscriptions_per_client: u32,
    pub retained_messages: u32,
    pub retained_bytes: u64,
    /// Ceiling on the session expiry interval, seconds.
    pub session_expiry_max: u32,
    /// Messages queued per offline session.
    pub queued_messages: u32,
    /// QoS 1/2 messages in flight per client, each way.
    pub inflight: u16,
    /// How long the tenant's message log keeps a message, seconds (the
    /// scale-out shape's replay to resumed sessions reaches no further).
    pub message_log_max_age: u32,
    /// How many bytes the tenant's message log keeps (oldest dropped).
    pub message_log_max_bytes: u64,
}

impl TenantLimits {
    pub const UNLIMITED: TenantLimits = TenantLimits {
        connections: u32::MAX,
        connect_rate: u32::MAX,
        publish_rate_msgs: u32::MAX,
        publish_rate_bytes: u64::MAX,
        client_publish_rate_msgs: u32::MAX,
        client_publish_rate_bytes: u64::MAX,
        max_packet_size: u32::MAX,
        subscriptions_per_client: u32::MAX,
        retained_messages: u32::MAX,
        retained_bytes: u64::MAX,
        session_expiry_max: u32::MAX,
        queued_messages: u32::MAX,
        inflight: u16::MAX,
        message_log_max_age: u32::MAX,
        message_log_max_bytes: u64::MAX,
    };
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits::UNLIMITED
    }
}

/// Which limit a refusal was about: the `limit` label of
/// [`LIMIT_EXCEEDED_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Connections,
    ConnectRate,
    PublishRate,
    PublishBytesRate,
    ClientPublishRate,
    ClientPublishBytesRate,
    PacketSize,
    Subscriptions,
    RetainedMessages,
    RetainedBytes,
    SessionExpiry,
    QueuedMessages,
    Inflight,
}

impl Limit {
    pub const ALL: [Limit; 13] = [
        Limit::Connections,
        Limit::ConnectRate,
        Limit::PublishRate,
        Limit::PublishBytesRate,
        Limit::ClientPublishRate,
        Limit::ClientPublishBytesRate,
        Limit::PacketSize,
        Limit::Subscriptions,
        Limit::RetainedMessages,
        Limit::RetainedBytes,
        Limit::SessionExpiry,
        Limit::QueuedMessages,
        Limit::Inflight,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::ConnectRate => "connect_rate",
            Limit::PublishRate => "publish_rate_msgs",
            Limit::PublishBytesRate => "publish_rate_bytes",
            Limit::ClientPublishRate => "client_publish_rate_msgs",
            Limit::ClientPublishBytesRate => "client_publish_rate_bytes",
            Limit::PacketSize => "max_packet_size",
            Limit::Subscriptions => "subscriptions_per_client",
            Limit::RetainedMessages => "retained_messages",
            Limit::RetainedBytes => "retained_bytes",
            Limit::SessionExpiry => "session_expiry_max",
            Limit::QueuedMessages => "queued_messages",
            Limit::Inflight => "inflight",
        }
    }

    /// Counts one refusal. The counter handles are looked up once, so a
    /// flood of refusals costs no hashing per packet.
    pub fn count(self) {
        static COUNTERS: OnceLock<[metrics::Counter; 13]> = OnceLock::new();
        COUNTERS.get_or_init(|| {
            Limit::ALL.map(|l| metrics::counter!(LIMIT_EXCEEDED_TOTAL, "limit" => l.label()))
        })[self as usize]
            .increment(1);
    }
}

/// Nanoseconds on a process-wide monotonic clock.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The burst a rate allows: one second's worth.
const WINDOW_NANOS: u64 = 1_000_000_000;

/// What `n` units cost at `rate` per second, in nanoseconds.
fn cost(n: u64, rate: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(WINDOW_NANOS) / u128::from(rate.max(1)))
        .unwrap_or(u64::MAX)
}

/// The GCRA step: with theoretical arrival time `tat`, may something costing
/// `cost` pass at `now`? Returns the new `tat` if so.
fn gcra(tat: u64, now: u64, cost: u64) -> Option<u64> {
    let next = tat.max(now).saturating_add(cost);
    (next - now <= WINDOW_NANOS).then_some(next)
}

/// A rate limiter shared between tasks: one atomic, lock-free.
#[derive(Debug, Default)]
pub struct SharedRate {
    tat: AtomicU64,
}

impl SharedRate {
    /// Takes `n` units at `rate` per second if they fit (nothing is taken
    /// otherwise). `n` larger than `rate` never fits.
    pub fn try_take(&self, now: u64, n: u64, rate: u64) -> bool {
        let cost = cost(n, rate);
        if cost == 0 {
            // Unlimited (or as good as): no shared write on the message path.
            return true;
        }
        let mut tat = self.tat.load(Relaxed);
        loop {
            let Some(next) = gcra(tat, now, cost) else {
                return false;
            };
            match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// Returns `n` units taken by [`SharedRate::try_take`] for something
    /// that was then refused by another limit: a refusal costs nothing.
    pub fn give_back(&self, n: u64, rate: u64) {
        let cost = cost(n, rate);
        if cost != 0 {
            let _ = self
                .tat
                .fetch_update(Relaxed, Relaxed, |tat| Some(tat.saturating_sub(cost)));
        }
    }
}

/// The share of a tenant-wide rate that is all of it.
pub const WHOLE_SHARE: u32 = 1 << 16;

/// `rate` at `share` (in parts of [`WHOLE_SHARE`]), rounded up, and never
/// below `floor` (itself capped at the rate): a node with a small or no
/// share still lets one connect or one packet through per second. An
/// unlimited rate stays unlimited.
fn share_of(rate: u64, share: u32, floor: u64) -> u64 {
    if share >= WHOLE_SHARE || rate >= u64::from(u32::MAX) {
        return rate;
    }
    let part = (u128::from(rate) * u128::from(share)).div_ceil(u128::from(WHOLE_SHARE)) as u64;
    part.max(floor.min(rate))
}

/// A rate limiter owned by one task (a connection): no atomics.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRate {
    tat: u64,
}

impl LocalRate {
    /// As [`SharedRate::try_take`].
    pub fn try_take(&mut self, now: u64, n: u64, rate: u64) -> bool {
        match gcra(self.tat, now, cost(n, rate)) {
            Some(next) => {
                self.tat = next;
                true
            }
            None => false,
        }
    }

    /// As [`SharedRate::give_back`].
    pub fn give_back(&mut self, n: u64, rate: u64) {
        self.tat = self.tat.saturating_sub(cost(n, rate));
    }
}

/// A tenant's limits and the tenant-wide state enforcing them.
#[derive(Debug)]
pub struct Quota {
    connections: AtomicU32,
    connect_rate: AtomicU32,
    publish_rate_msgs: AtomicU32,
    publish_rate_bytes: AtomicU64,
    client_publish_rate_msgs: AtomicU32,
    client_publish_rate_bytes: AtomicU64,
    max_packet_size: AtomicU32,
    subscriptions_per_client: AtomicU32,
    retained_messages: AtomicU32,
    retained_bytes: AtomicU64,
    session_expiry_max: AtomicU32,
    queued_messages: AtomicU32,
    inflight: AtomicU32,
    message_log_max_age: AtomicU32,
    message_log_max_bytes: AtomicU64,
    /// Whether limits were ever set (else: unlimited, as created).
    set: AtomicBool,
    /// Live connections of the tenant (on this process).
    live: AtomicU32,
    /// This process's share of the tenant-wide publish rates, in parts of
    /// [`WHOLE_SHARE`].
    publish_share: AtomicU32,
    /// Whether the publish rates are shared with other processes (a share
    /// was ever set): then [`Quota::publish_attempts`] are counted.
    shared: AtomicBool,
    /// PUBLISHes checked against the tenant-wide rates (passed or not),
    /// while shared: this process's demand.
    publish_attempts: AtomicU64,
    connects: SharedRate,
    publishes: SharedRate,
    publish_bytes: SharedRate,
    /// Refusals by [`Limit`] since the tenant was made here: the tenant's
    /// own series (`crate::tenant_series`).
    refusals: [AtomicU64; Limit::ALL.len()],
}

impl Default for Quota {
    fn default() -> Self {
        Quota::new(TenantLimits::UNLIMITED)
    }
}

impl Quota {
    pub fn new(l: TenantLimits) -> Quota {
        Quota {
            connections: AtomicU32::new(l.connections),
            connect_rate: AtomicU32::new(l.connect_rate),
            publish_rate_msgs: AtomicU32::new(l.publish_rate_msgs),
            publish_rate_bytes: AtomicU64::new(l.publish_rate_bytes),
            client_publish_rate_msgs: AtomicU32::new(l.client_publish_rate_msgs),
            client_publish_rate_bytes: AtomicU64::new(l.client_publish_rate_bytes),
            max_packet_size: AtomicU32::new(l.max_packet_size),
            subscriptions_per_client: AtomicU32::new(l.subscriptions_per_client),
            retained_messages: AtomicU32::new(l.retained_messages),
            retained_bytes: AtomicU64::new(l.retained_bytes),
            session_expiry_max: AtomicU32::new(l.session_expiry_max),
            queued_messages: AtomicU32::new(l.queued_messages),
            inflight: AtomicU32::new(u32::from(l.inflight)),
            message_log_max_age: AtomicU32::new(l.message_log_max_age),
            message_log_max_bytes: AtomicU64::new(l.message_log_max_bytes),
            set: AtomicBool::new(false),
            live: AtomicU32::new(0),
            publish_share: AtomicU32::new(WHOLE_SHARE),
            shared: AtomicBool::new(false),
            publish_attempts: AtomicU64::new(0),
            connects: SharedRate::default(),
            publishes: SharedRate::default(),
            publish_bytes: SharedRate::default(),
            refusals: Default::default(),
        }
    }

    /// Counts a refusal by `limit`: process-wide ([`Limit::count`]) and
    /// for this tenant.
    pub fn refused(&self, limit: Limit) {
        limit.count();
        self.refusals[limit as usize].fetch_add(1, Relaxed);
    }

    /// This tenant's refusals so far, by limit.
    pub fn refusals(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL
            .iter()
            .map(|&l| (l, self.refusals[l as usize].load(Relaxed)))
    }

    /// The limits as of now.
    pub fn limits(&self) -> TenantLimits {
        TenantLimits {
            connections: self.connections.load(Relaxed),
            connect_rate: self.connect_rate.load(Relaxed),
            publish_rate_msgs: self.publish_rate_msgs.load(Relaxed),
            publish_rate_bytes: self.publish_rate_bytes.load(Relaxed),
            client_publish_rate_msgs: self.client_publish_rate_msgs.load(Relaxed),
            client_publish_rate_bytes: self.client_publish_rate_bytes.load(Relaxed),
            max_packet_size: self.max_packet_size.load(Relaxed),
            subscriptions_per_client: self.subscriptions_per_client.load(Relaxed),
            retained_messages: self.retained_messages.load(Relaxed),
            retained_bytes: self.retained_bytes.load(Relaxed),
            session_expiry_max: self.session_expiry_max.load(Relaxed),
            queued_messages: self.queued_messages.load(Relaxed),
            inflight: self.inflight.load(Relaxed) as u16,
            message_log_max_age: self.message_log_max_age.load(Relaxed),
            message_log_max_bytes: self.message_log_max_bytes.load(Relaxed),
        }
    }

    /// Whether limits were ever set (else: unlimited, as created).
    pub fn limits_set(&self) -> bool {
        self.set.load(Relaxed)
    }

    /// Replaces the limits; returns whether they changed.
    pub fn set_limits(&self, l: TenantLimits) -> bool {
        self.set.store(true, Relaxed);
        if self.limits() == l {
            return false;
        }
        self.connections.store(l.connections, Relaxed);
        self.connect_rate.store(l.connect_rate, Relaxed);
        self.publish_rate_msgs.store(l.publish_rate_msgs, Relaxed);
        self.publish_rate_bytes.store(l.publish_rate_bytes, Relaxed);
        self.client_publish_rate_msgs
            .store(l.client_publish_rate_msgs, Relaxed);
        self.client_publish_rate_bytes
            .store(l.client_publish_rate_bytes, Relaxed);
        self.max_packet_size.store(l.max_packet_size, Relaxed);
        self.subscriptions_per_client
            .store(l.subscriptions_per_client, Relaxed);
        self.retained_messages.store(l.retained_messages, Relaxed);
        self.retained_bytes.store(l.retained_bytes, Relaxed);
        self.session_expiry_max.store(l.session_expiry_max, Relaxed);
        self.queued_messages.store(l.queued_messages, Relaxed);
        self.inflight.store(u32::from(l.inflight), Relaxed);
        self.message_log_max_age
            .store(l.message_log_max_age, Relaxed);
        self.message_log_max_bytes
            .store(l.message_log_max_bytes, Relaxed);
        true
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size.load(Relaxed)
    }

    pub fn session_expiry_max(&self) -> u32 {
        self.session_expiry_max.load(Relaxed)
    }

    /// A client's publish rates: (messages/s, payload bytes/s).
    pub fn client_publish_rates(&self) -> (u32, u64) {
        (
            self.client_publish_rate_msgs.load(Relaxed),
            self.client_publish_rate_bytes.load(Relaxed),
        )
    }

    pub fn inflight(&self) -> u16 {
        self.inflight.load(Relaxed) as u16
    }

    pub fn subscriptions_per_client(&self) -> u32 {
        self.subscriptions_per_client.load(Relaxed)
    }

    pub fn queued_messages(&self) -> u32 {
        self.queued_messages.load(Relaxed)
    }

    /// Live connections of the tenant on this process.
    pub fn live_connections(&self) -> u32 {
        self.live.load(Relaxed)
    }

    /// Sets this process's share of the tenant-wide publish rates
    /// (messages and bytes), in parts of [`WHOLE_SHARE`] (more is the
    /// whole); returns whether it changed.
    pub fn set_publish_share(&self, parts: u32) -> bool {
        self.shared.store(true, Relaxed);
        let parts = parts.min(WHOLE_SHARE);
        self.publish_share.swap(parts, Relaxed) != parts
    }

    /// The PUBLISHes checked against the tenant-wide rates since the last
    /// call, counted once a share was set (the demand the share is set by;
    /// nothing is counted in the embedded shape).
    pub fn publish_attempts(&self) -> u64 {
        self.publish_attempts.swap(0, Relaxed)
    }

    /// Whether a limit holds across processes: the connections or a
    /// tenant-wide rate (what the scale-out shape counts in NATS).
    pub fn limited_tenant_wide(&self) -> bool {
        let l = self.limits();
        l.connections != u32::MAX
            || l.connect_rate != u32::MAX
            || l.publish_rate_msgs != u32::MAX
            || l.publish_rate_bytes != u64::MAX
    }

    /// A tenant-wide publish rate at this process's share; `floor` units
    /// per second at least.
    fn shared_rate(&self, rate: u64, floor: u64) -> u64 {
        share_of(rate, self.publish_share.load(Relaxed), floor)
    }

    /// One more CONNECT this second, if the connect rate at `share` (parts
    /// of [`WHOLE_SHARE`]; one a second at least) allows it.
    pub fn try_connect_rate(&self, now: u64, share: u32) -> bool {
        let rate = share_of(u64::from(self.connect_rate.load(Relaxed)), share, 1);
        self.connects.try_take(now, 1, rate)
    }

    /// Whether a PUBLISH of `bytes` payload bytes fits the tenant-wide rates
    /// (taken from both if so; the message rate is taken even when the byte
    /// rate then refuses).
    pub fn try_publish(&self, now: u64, bytes: u64) -> Result<(), Limit> {
        if self.shared.load(Relaxed) {
            self.publish_attempts.fetch_add(1, Relaxed);
        }
        let msgs = self.shared_rate(u64::from(self.publish_rate_msgs.load(Relaxed)), 1);
        if !self.publishes.try_take(now, 1, msgs) {
            return Err(Limit::PublishRate);
        }
        // The byte floor is one packet's worth: a small share must not
        // refuse every packet larger than it.
        let max_bytes = self.shared_rate(
            self.publish_rate_bytes.load(Relaxed),
            u64::from(self.max_packet_size.load(Relaxed)),
        );
        if !self.publish_bytes.try_take(now, bytes, max_bytes) {
            // Refused: the message it did not send is not counted either.
            self.publishes.give_back(1, msgs);
            return Err(Limit::PublishBytesRate);
        }
        Ok(())
    }
}

/// Whether storing `message` as retained keeps the tenant within its
/// retained quota. Deleting always does; so does replacing a message with
/// one no larger (a lowered limit does not block updates that shrink).
pub(crate) fn check_retained(
    store: &RetainedMap,
    message: &Message,
    max_messages: u32,
    max_bytes: u64,
) -> Result<(), Limit> {
    if message.payload.is_empty() {
        return Ok(());
    }
    let old = store.get(&message.topic).map(|m| m.weight() as u64);
    if old.is_none() && store.len() as u64 >= u64::from(max_messages) {
        return Err(Limit::RetainedMessages);
    }
    let before = store.bytes() as u64;
    let after = before - old.unwrap_or(0) + message.weight() as u64;
    if after > max_bytes && after > before {
        return Err(Limit::RetainedBytes);
    }
    Ok(())
}

/// A tenant's live connection, counted until dropped.
pub struct ConnectionSlot {
    tenant: Arc<Tenant>,
    /// What else counts the connection (another node's view of the tenant),
    /// given back when the slot is: after the local count went down.
    lease: Option<Box<dyn Send + Sync>>,
}

impl ConnectionSlot {
    /// The tenant whose connection this is.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }

    /// Keeps `lease` until the slot is given back, and drops it then.
    pub fn with_lease(mut self, lease: impl Send + Sync + 'static) -> ConnectionSlot {
        self.lease = Some(Box::new(lease));
        self
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.tenant.quota().live.fetch_sub(1, Relaxed);
    }
}

/// Counts a new connection of `tenant`, unless it has its limit already
/// (check and increment are one atomic step). A `takeover` (a client
/// reconnecting while its old connection is still attached, which is about
/// to close and free its slot) is counted even at the limit: a device that
/// reconnects after a dropped link must not be locked out by its own ghost.
pub fn try_connection(tenant: &Arc<Tenant>, takeover: bool) -> Option<ConnectionSlot> {
    let quota = tenant.quota();
    let limit = quota.connections.load(Relaxed);
    quota
        .live
        .fetch_update(Relaxed, Relaxed, |n| {
            (n < limit || takeover).then_some(n + 1)
        })
        .ok()
        .map(|_| ConnectionSlot {
            tenant: tenant.clone(),
            lease: None,
        })
}

/// Where a tenant's connection limit is counted: this process only
/// ([`LocalConnections`], the embedded shape), or every node of the
/// scale-out shape (`aerie_cluster::ClusterConnections`).
pub trait TenantConnections: std::fmt::Debug + Send + Sync + 'static {
    /// A slot for a new connection of `tenant`, or None at its limit (a
    /// `takeover` is admitted at the limit, as [`try_connection`] says).
    fn admit(&self, tenant: &Arc<Tenant>, takeover: bool) -> BoxFuture<Option<ConnectionSlot>>;

    /// This process's share of every tenant's connect rate, in parts of
    /// [`WHOLE_SHARE`]: all of it when it is the only process.
    fn connect_rate_share(&self) -> u32 {
        WHOLE_SHARE
    }
}

/// One process: the tenant's atomic count is all there is.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalConnections;

impl TenantConnections for LocalConnections {
    fn admit(&self, tenant: &Arc<Tenant>, takeover: bool) -> BoxFuture<Option<ConnectionSlot>> {
        Box::pin(std::future::ready(try_connection(tenant, takeover)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_rate_allows_one_seconds_burst_then_its_pace() {
        let r = SharedRate::default();
        let t0 = 10 * SEC;
        let passed = (0..20).filter(|_| r.try_take(t0, 1, 5)).count();
        assert_eq!(passed, 5, "a burst of one second's worth");
        assert!(!r.try_take(t0 + SEC / 10, 1, 5), "not yet: 200 ms per unit");
        assert!(r.try_take(t0 + SEC / 5, 1, 5), "one more after 200 ms");
        assert!(!r.try_take(t0 + SEC / 5, 1, 5));
        // Idle time does not bank more than the burst.
        let later = t0 + 100 * SEC;
        assert_eq!((0..20).filter(|_| r.try_take(later, 1, 5)).count(), 5);
    }

    #[test]
    fn a_byte_rate_takes_what_a_packet_weighs_and_refuses_one_larger_than_a_second() {
        let mut r = LocalRate::default();
        let t0 = 5 * SEC;
        assert!(!r.try_take(t0, 1001, 1000), "larger than the burst");
        assert!(r.try_take(t0, 600, 1000));
        assert!(!r.try_take(t0, 600, 1000), "refused, and nothing taken");
        assert!(r.try_take(t0, 400, 1000));
        assert!(r.try_take(t0 + SEC / 2, 500, 1000));
    }

    #[test]
    fn unlimited_always_passes() {
        let r = SharedRate::default();
        for _ in 0..100_000 {
            assert!(r.try_take(SEC, 1, u64::from(u32::MAX)));
        }
        assert!(r.try_take(SEC, 256 * 1024 * 1024, u64::MAX));
        let mut l = LocalRate::default();
        assert!((0..10_000).all(|_| l.try_take(SEC, 1, u64::from(u32::MAX))));
    }

    #[test]
    fn a_changed_rate_applies_at_the_next_check() {
        let q = Quota::new(TenantLimits {
            connect_rate: 1,
            ..TenantLimits::UNLIMITED
        });
        assert!(q.try_connect_rate(SEC, WHOLE_SHARE));
        assert!(!q.try_connect_rate(SEC, WHOLE_SHARE));
        assert!(q.set_limits(TenantLimits {
            connect_rate: 1000,
            ..TenantLimits::UNLIMITED
        }));
        assert!(q.try_connect_rate(SEC + SEC / 100, WHOLE_SHARE));
        assert!(!q.set_limits(q.limits()), "unchanged");
    }

    #[test]
    fn a_share_scales_the_tenant_wide_rates_and_keeps_a_floor() {
        let q = Quota::new(TenantLimits {
            connect_rate: 10,
            publish_rate_msgs: 100,
            publish_rate_bytes: 1000,
            max_packet_size: 300,
            ..TenantLimits::UNLIMITED
        });
        let now = 11 * SEC;
        let burst = |q: &Quota, now| (0..1000).filter(|_| q.try_publish(now, 1).is_ok()).count();
        assert_eq!(burst(&q, now), 100, "the whole rate by default");
        assert!(q.set_publish_share(WHOLE_SHARE / 4));
        assert!(!q.set_publish_share(WHOLE_SHARE / 4), "unchanged");
        assert_eq!(burst(&q, now + 10 * SEC), 25, "a quarter of it");
        let connects = |now, share| (0..100).filter(|_| q.try_connect_rate(now, share)).count();
        assert_eq!(
            connects(now, WHOLE_SHARE / 4),
            3,
            "a quarter of 10, rounded up"
        );
        // No share at all still lets one connect a second through, and a
        // packet as large as the tenant allows.
        q.set_publish_share(0);
        assert_eq!(connects(now + 10 * SEC, 0), 1);
        assert_eq!(q.try_publish(now + 20 * SEC, 300), Ok(()));
        assert_eq!(
            q.try_publish(now + 20 * SEC, 1),
            Err(Limit::PublishRate),
            "one message a second"
        );
        assert_eq!(
            q.try_publish(now + 30 * SEC, 301),
            Err(Limit::PublishBytesRate),
            "300 bytes a second"
        );
        // Every check counts as demand once shared, refused or not.
        assert_eq!(q.publish_attempts(), 1003);
        assert_eq!(q.publish_attempts(), 0, "taken");
        assert_eq!(
            Quota::default().publish_attempts(),
            0,
            "not shared: not counted"
        );
        // An unlimited rate is not scaled into a limited one.
        let unlimited = Quota::default();
        unlimited.set_publish_share(1);
        assert_eq!(burst(&unlimited, now), 1000);
    }

    #[test]
    fn a_publish_refused_by_the_byte_rate_uses_no_message_rate() {
        let q = Quota::new(TenantLimits {
            publish_rate_msgs: 2,
            publish_rate_bytes: 10,
            ..TenantLimits::UNLIMITED
        });
        let now = 7 * SEC;
        assert_eq!(q.try_publish(now, 11), Err(Limit::PublishBytesRate));
        assert_eq!(q.try_publish(now, 11), Err(Limit::PublishBytesRate));
        // Both messages of the burst are still there.
        assert_eq!(q.try_publish(now, 1), Ok(()));
        assert_eq!(q.try_publish(now, 1), Ok(()));
        assert_eq!(q.try_publish(now, 1), Err(Limit::PublishRate));
    }

    #[test]
    fn given_back_units_can_be_taken_again() {
        let shared = SharedRate::default();
        let mut local = LocalRate::default();
        let now = 9 * SEC;
        assert!(shared.try_take(now, 5, 5) && local.try_take(now, 5, 5));
        assert!(!shared.try_take(now, 1, 5) && !local.try_take(now, 1, 5));
        shared.give_back(2, 5);
        local.give_back(2, 5);
        assert!(shared.try_take(now, 2, 5) && local.try_take(now, 2, 5));
        assert!(!shared.try_take(now, 1, 5) && !local.try_take(now, 1, 5));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_burst() {
        let r = Arc::new(SharedRate::default());
        let now = 3 * SEC;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..1000).filter(|_| r.try_take(now, 1, 100)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100);
    }

    fn retained(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Message::published(
            topic.into(),
            bytes::Bytes::from_static(payload),
            aerie_proto::QoS::AtLeastOnce,
            true,
            Default::default(),
            Default::default(),
            Default::default(),
        )
    }

    #[test]
    fn retained_over_the_count_or_bytes_is_refused_but_replacing_and_deleting_are_not() {
        let broker = crate::Broker::new(crate::CoreConfig::default());
        let tenant = broker.tenant("t");
        let weight = retained("a", b"1").weight() as u64;
        tenant.quota().set_limits(TenantLimits {
            retained_messages: 2,
            retained_bytes: 2 * weight + 3,
            ..TenantLimits::UNLIMITED
        });
        assert_eq!(tenant.publish(retained("a", b"1")).refused, None);
        assert_eq!(tenant.publish(retained("b", b"1")).refused, None);
        assert_eq!(
            tenant.publish(retained("c", b"1")).refused,
            Some(Limit::RetainedMessages)
        );
        assert_eq!(tenant.publish(retained("a", b"1234")).refused, None);
        assert_eq!(
            tenant.publish(retained("b", b"12345")).refused,
            Some(Limit::RetainedBytes)
        );
        assert_eq!(tenant.publish(retained("a", b"")).refused, None, "delete");
        assert_eq!(tenant.publish(retained("c", b"1")).refused, None);
        assert_eq!(tenant.retained_count(), 2);
    }

    #[test]
    fn a_connection_slot_is_counted_until_dropped_and_the_limit_holds() {
        let broker = crate::Broker::new(crate::CoreConfig::default());
        let tenant = broker.tenant("t");
        tenant.quota().set_limits(TenantLimits {
            connections: 2,
            ..TenantLimits::UNLIMITED
        });
        let a = try_connection(&tenant, false).expect("first");
        let b = try_connection(&tenant, false).expect("second");
        assert!(try_connection(&tenant, false).is_none());
        drop(a);
        assert_eq!(tenant.quota().live_connections(), 1);
        let c = try_connection(&tenant, false).expect("a slot was freed");
        drop(b);
        assert_eq!(tenant.quota().live_connections(), 1);
        // A takeover is counted even at the limit; its ghost frees a slot.
        let _d = try_connection(&tenant, false).expect("second again");
        let ghost = c;
        let _e = try_connection(&tenant, true).expect("a takeover at the limit");
        assert_eq!(tenant.quota().live_connections(), 3);
        drop(ghost);
        assert!(
            try_connection(&tenant, false).is_none(),
            "back at the limit"
        );
    }
}
