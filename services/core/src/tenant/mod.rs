//! One tenant's namespace: a [`Router`] (subscription trie, retained
//! messages, delivery to local sessions) and a [`SessionTable`] (sessions by
//! client id: attach, detach, takeover, expiry, wills). Tenants share none of
//! these, so nothing one tenant does can match, read or lock another's.
//! `Tenant` is the face both halves show to connections.

mod resume;
mod router;
mod sessions;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use aerie_proto::{QoS, ReasonCode, Will, topic};

pub use router::Router;
pub use sessions::SessionTable;

use crate::config::CoreConfig;
use crate::message::{Delivery, Message};
use crate::node::Node;
use crate::quota::{Limit, Quota};
use crate::seams::Seams;
use crate::session::{FlightState, Session, SubscriptionSpec};
use crate::store::{LoadedSession, Store, TenantStore, Ticket};
use crate::usage::Usage;

pub struct Tenant {
    pub id: Arc<str>,
    config: Arc<CoreConfig>,
    router: Arc<Router>,
    sessions: Arc<SessionTable>,
    /// The store as this tenant writes to it (closed when it is deleted).
    store: Arc<TenantStore>,
    /// When this process made it (see [`Tenant::created_at`]).
    created_at: std::time::Instant,
}

/// What routing one message did.
#[derive(Debug, Default)]
pub struct Published {
    /// Sessions (or shared groups) it matched, whether or not their queues
    /// took it: what PUBACK's "no matching subscribers" (0x10) is about.
    pub matched: usize,
    /// Sessions it was queued for.
    pub routed: usize,
    /// Acknowledge the publisher only once this ticket is durable.
    pub ticket: Ticket,
    /// A subscriber whose queue is filling up while its socket still takes
    /// bytes: the publisher may wait a little for it to drain.
    pub congested: Option<Arc<Session>>,
    /// Not stored nor routed: a retained message over the tenant's quota,
    /// or a QoS 1/2 message the message log can never keep (`PacketSize`).
    pub refused: Option<Limit>,
    /// A message routed once the cluster has done its part (a retained
    /// store over the network; an inbound QoS 2 id recorded first): how it
    /// ended. The publisher's acknowledgement waits for it.
    pub stored_later: Option<tokio::sync::oneshot::Receiver<Later>>,
}

impl Published {
    /// How it ended, once it has (see [`Published::stored_later`]).
    pub async fn settled(self) -> Later {
        match (self.stored_later, self.refused) {
            (Some(later), _) => later.await.unwrap_or(Later::Unavailable),
            (None, Some(limit)) => Later::Refused(limit),
            (None, None) => Later::Kept(self.ticket),
        }
    }
}

/// How a PUBLISH whose routing waited for the cluster ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// Kept and routed (a resend: routed by the node that had it first):
    /// acknowledge once `ticket` is durable.
    Kept(Ticket),
    /// Neither kept nor routed: over this limit.
    Refused(Limit),
    /// The cluster did not keep it in time: neither acknowledged nor
    /// routed, as when the store is unavailable.
    Unavailable,
}

/// A connection's hold on a session, from [`Tenant::attach`].
#[derive(Debug)]
pub struct Attachment {
    pub session: Arc<Session>,
    /// An existing session was resumed (CONNACK session present).
    pub session_present: bool,
    /// The session's protocol state, now owned by the connection.
    pub flight: FlightState,
}

/// The answer to one SUBSCRIBE filter.
pub struct Subscribed {
    /// The subscription replaced an existing one with the same filter.
    pub existed: bool,
    /// Retained messages to send after the SUBACK, per the retain handling
    /// option.
    pub retained: Vec<Delivery>,
    /// Those of a retained store that answers later (scale-out: JetStream):
    /// the connection queues them once it has, still after the SUBACK (a
    /// client may drop a PUBLISH that comes before the SUBACK of its
    /// subscription). `None`: all in `retained` (always, embedded).
    pub retained_later: Option<crate::seams::BoxFuture<Vec<Delivery>>>,
    /// Resolves once the node's interest in the filter is live on every
    /// node (the backbone's [`crate::seams::Backbone::interest`]); the
    /// SUBACK waits for it. `None`: live already (always, embedded).
    pub live: Option<crate::seams::BoxFuture<()>>,
}

impl std::fmt::Debug for Subscribed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribed")
            .field("existed", &self.existed)
            .field("retained", &self.retained)
            .field(
                "retained_later",
                &self.retained_later.as_ref().map(|_| "pending"),
            )
            .field("live", &self.live.as_ref().map(|_| "pending"))
            .finish()
    }
}

impl Tenant {
    pub(crate) fn new(
        id: Arc<str>,
        config: Arc<CoreConfig>,
        node: Arc<Node>,
        session_ids: Arc<AtomicU64>,
        store: Arc<dyn Store>,
        seams: &Seams,
    ) -> Tenant {
        let store = Arc::new(TenantStore::new(store));
        let router = Arc::new(Router::new(
            id.clone(),
            config.clone(),
            node,
            store.clone(),
            seams,
        ));
        let sessions = Arc::new(SessionTable::new(
            id.clone(),
            config.clone(),
            router.clone(),
            seams,
            session_ids,
            store.clone(),
        ));
        Tenant {
            id,
            config,
            router,
            sessions,
            store,
            created_at: std::time::Instant::now(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The node this tenant's core runs on: message ids and origins.
    pub fn node(&self) -> &Node {
        self.router.node()
    }

    /// What the tenant's clients did since the counters were last taken.
    pub fn usage(&self) -> &Usage {
        self.router.usage()
    }

    /// Where the tenant's durable state goes.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Whether the backbone toward the other nodes cannot take more (the
    /// scale-out shape): `waiter`'s connection is woken when it can.
    pub fn backbone_backlogged(&self, waiter: &Arc<crate::session::Session>) -> bool {
        self.router.backbone_backlogged(waiter)
    }

    /// The tenant's limits (unlimited until set) and their shared state.
    pub fn quota(&self) -> &Quota {
        self.router.quota()
    }

    /// Replaces the tenant's limits (its plan's, from the directory);
    /// whether they changed. Its message log follows them.
    pub fn set_limits(&self, limits: crate::quota::TenantLimits) -> bool {
        let changed = self.quota().set_limits(limits);
        if changed {
            self.router.limits_changed(&limits);
        }
        changed
    }

    /// Sets the limits a tenant's first connection was verified with,
    /// unless they were set before (later changes come through
    /// [`Tenant::set_limits`]).
    pub fn init_limits(&self, limits: crate::quota::TenantLimits) {
        if !self.quota().limits_set() {
            self.set_limits(limits);
        }
    }

    /// The routing half.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The session half.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    /// Routes a message to every matching subscription (and stores it when it
    /// is retained). A retained message over the tenant's retained quota is
    /// neither stored nor routed (`refused`).
    pub fn publish(&self, message: Arc<Message>) -> Published {
        self.router.publish(message)
    }

    /// Routes a QoS 2 PUBLISH of `session` with `packet_id`. Where the
    /// session may resume on another node, the packet id and the message's
    /// id are recorded first (`SessionRecords::keep_inbound_qos2`), so that
    /// a resend there after this node's death is routed once.
    pub fn publish_exactly_once(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
        message: Arc<Message>,
    ) -> Published {
        match self
            .sessions
            .keep_inbound_qos2(session, packet_id, message.id)
        {
            None => self.router.publish(message),
            Some(kept) => self
                .router
                .publish_when(message, Box::pin(async move { kept.await.then_some(true) })),
        }
    }

    /// Routes the resend (DUP) of a QoS 2 PUBLISH that a node now gone
    /// recorded as `message.id`: only if the message log did not hold it
    /// already (that node routed it before it died).
    pub fn publish_resent(&self, message: Arc<Message>) -> Published {
        let held = self.router.append_resent(&message);
        self.router
            .publish_when(message, Box::pin(async move { held.await.map(|had| !had) }))
    }

    /// The inbound QoS 2 exchange `packet_id` of `session` ended (PUBREL):
    /// see [`crate::seams::SessionRecords::released_inbound_qos2`].
    pub fn released_inbound_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
    ) -> Option<crate::seams::BoxFuture<bool>> {
        self.sessions.released_inbound_qos2(session, packet_id)
    }

    /// Whether persistent sessions' outbound windows are recorded off the
    /// node: see [`crate::seams::SessionRecords::keeps_windows`].
    pub fn keeps_windows(&self) -> bool {
        self.sessions.keeps_windows()
    }

    /// See [`crate::seams::SessionRecords::window_changed`].
    pub fn window_changed(
        &self,
        session: &Arc<Session>,
        changes: Vec<crate::seams::WindowChange>,
        wait: bool,
    ) -> Option<crate::seams::BoxFuture<bool>> {
        self.sessions.window_changed(session, changes, wait)
    }

    pub fn retained_count(&self) -> usize {
        self.router.retained_count()
    }

    /// The unexpired retained messages whose topics match `filter`.
    pub async fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.router.retained_matching(filter).await
    }

    /// Adds (or replaces) a subscription. `filter` is as the client sent it,
    /// `$share/<group>/` prefix included.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        spec: SubscriptionSpec,
    ) -> Result<Subscribed, ReasonCode> {
        let subscribed = self.router.subscribe(session, filter, spec)?;
        self.sessions.record_changed(session);
        Ok(subscribed)
    }

    /// Removes a subscription; false when there was none.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let removed = self.router.unsubscribe(session, filter);
        if removed {
            self.sessions.record_changed(session);
        }
        removed
    }

    /// Attaches a connection to the session of `client_id`: takes an attached
    /// one over (its connection is asked to close with 0x8E and hands the
    /// session back), resumes a persistent one, or starts a new one.
    pub async fn attach(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry_interval: u32,
        connection_id: u64,
    ) -> Result<Attachment, ReasonCode> {
        self.attach_with_will(client_id, clean_start, expiry_interval, connection_id, None)
            .await
    }

    /// [`Tenant::attach`] for a connection with `will`, which is kept off
    /// the node (the `Wills` seam) before this returns.
    pub async fn attach_with_will(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry_interval: u32,
        connection_id: u64,
        will: Option<&Will>,
    ) -> Result<Attachment, ReasonCode> {
        self.sessions
            .attach(client_id, clean_start, expiry_interval, connection_id, will)
            .await
    }

    /// The will of `session`'s connection `connection_id` was dropped
    /// while connected (its token no longer allows its topic): what was
    /// kept of it off the node goes.
    pub fn will_discarded(&self, session: &Arc<Session>, connection_id: u64) {
        self.sessions.will_discarded(session, connection_id);
    }

    /// Publishes the will of a connection of another node that is gone
    /// (kept off that node by the `Wills` seam), as that node would have.
    pub fn publish_kept_will(&self, will: Will) {
        // Session 0 is no session here: no-local spares nobody.
        self.sessions.publish_will(0, will);
    }

    /// Detaches a connection from its session. `will` is the will to publish
    /// (None after a normal DISCONNECT); `expiry_interval` is the session's
    /// final expiry (0 ends it now).
    pub fn detach(
        &self,
        session: &Arc<Session>,
        connection_id: u64,
        flight: FlightState,
        will: Option<Will>,
    ) {
        self.sessions.detach(session, connection_id, flight, will)
    }

    /// Recreates a stored session, detached, with its subscriptions, queue
    /// and inbound QoS 2 ids; its expiry clock continues from the record.
    pub(crate) fn restore_session(&self, loaded: LoadedSession) {
        self.sessions.restore_session(loaded)
    }

    /// Puts back a stored retained message.
    pub(crate) fn restore_retained(&self, message: Arc<Message>) {
        self.router.restore_retained(message)
    }

    /// Messages queued in all of this tenant's sessions (for the queue-depth gauge).
    pub fn queued_messages(&self) -> usize {
        self.sessions.queued_messages()
    }

    /// Subscriptions of all of this tenant's sessions.
    pub fn subscription_count(&self) -> usize {
        self.router.subscription_count()
    }

    /// This node's sessions and shared groups a message on `topic` would match.
    pub fn matching_subscriptions(&self, topic: &str) -> usize {
        self.router.matching_subscriptions(topic)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.session_count()
    }

    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.session(client_id)
    }

    /// The tenant was deleted: forgets everything it had, in memory and on
    /// disk (sessions, queues, subscriptions, retained messages), ends its
    /// timers, and drops any write it would still make. Its connections
    /// should be gone first (the gateway waits for that); a late one finds
    /// its session ended and writes nothing.
    pub fn dispose(&self) {
        self.sessions.mark_deleted();
        self.store.delete_tenant(self.id.clone());
        self.sessions.end_all();
        self.router.clear_retained();
    }

    /// When this process made the tenant's core: on its first client or HTTP
    /// publish, or at start-up from the store. A directory loaded before
    /// then may not know the tenant yet without it having been deleted.
    pub fn created_at(&self) -> std::time::Instant {
        self.created_at
    }

    /// Asks every attached connection to close (server shutdown, tenant suspended).
    pub fn kick_all(&self, kick: crate::session::Kick) {
        self.sessions.kick_all(kick)
    }
}

/// `$share/g/f` → (`f`, Some(`g`)); anything else → (filter, None).
pub(crate) fn split_shared(filter: &str) -> (&str, Option<&str>) {
    match topic::parse_shared(filter) {
        Ok(Some(s)) => (s.filter, Some(s.group)),
        _ => (filter, None),
    }
}

/// Granted QoS as a SUBACK reason code.
pub fn granted(qos: QoS) -> ReasonCode {
    ReasonCode(qos as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeId;
    use aerie_proto::SubscriptionOptions;

    fn from(origin: crate::message::Origin) -> Arc<Message> {
        from_topic("t", origin)
    }

    #[tokio::test]
    async fn no_local_skips_only_the_publishing_session_of_this_node() {
        let broker = crate::Broker::new(CoreConfig::default());
        let tenant = broker.tenant("t");
        let session = tenant.attach("c", true, 0, 1).await.unwrap().session;
        let spec = SubscriptionSpec {
            options: SubscriptionOptions {
                no_local: true,
                ..Default::default()
            },
            id: None,
        };
        tenant.subscribe(&session, "t", spec).unwrap();

        assert_eq!(
            tenant
                .publish(from(tenant.node().origin(session.id)))
                .routed,
            0
        );
        // The same session id on another node is another session.
        let elsewhere = crate::message::Origin {
            node: NodeId(tenant.node().id().0 ^ 1),
            session: session.id,
        };
        assert_eq!(tenant.publish(from(elsewhere)).routed, 1);
        assert_eq!(session.queued(), 1);
    }

    #[tokio::test]
    async fn matching_subscriptions_counts_what_a_publish_matches_without_delivering() {
        let broker = crate::Broker::new(CoreConfig::default());
        let tenant = broker.tenant("t");
        let spec = SubscriptionSpec {
            options: SubscriptionOptions::default(),
            id: None,
        };
        let one = tenant.attach("one", true, 0, 1).await.unwrap().session;
        let two = tenant.attach("two", true, 0, 2).await.unwrap().session;
        // Overlapping filters of one session are one match; a shared group one.
        tenant.subscribe(&one, "a/+", spec).unwrap();
        tenant.subscribe(&one, "a/#", spec).unwrap();
        tenant.subscribe(&two, "$share/g/a/b", spec).unwrap();
        tenant.subscribe(&one, "$share/g/a/b", spec).unwrap();
        tenant.subscribe(&two, "other", spec).unwrap();

        assert_eq!(tenant.matching_subscriptions("a/b"), 2);
        assert_eq!(tenant.matching_subscriptions("a/c"), 1);
        assert_eq!(tenant.matching_subscriptions("nothing"), 0);
        assert_eq!((one.queued(), two.queued()), (0, 0), "nothing delivered");
        let origin = tenant.node().origin(0);
        assert_eq!(tenant.publish(from_topic("a/b", origin)).matched, 2);
    }

    fn from_topic(topic: &str, origin: crate::message::Origin) -> Arc<Message> {
        Message::published(
            topic.into(),
            bytes::Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Default::default(),
            origin,
            Default::default(),
        )
    }
}
