//! One tenant's namespace: its subscription trie, retained messages and
//! sessions. Tenants share none of these, so nothing one tenant does can match,
//! read or lock another's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aerie_proto::{QoS, ReasonCode, RetainHandling, Will, topic};
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::config::CoreConfig;
use crate::message::{Delivery, Message, SharedGroup};
use crate::metrics as m;
use crate::node::Node;
use crate::quota::{Limit, Quota};
use crate::retained::{RetainChange, RetainedStore};
use crate::session::{Enqueued, FlightState, Kick, Session, SessionRef, SubscriptionSpec};
use crate::store::{LoadedSession, Store, StoreOp, TenantStore, Ticket, unix_ms_now};
use crate::trie::SubTrie;
use crate::usage::Usage;

pub struct Tenant {
    pub id: Arc<str>,
    config: Arc<CoreConfig>,
    node: Arc<Node>,
    subs: RwLock<SubTrie<SessionRef, SubscriptionSpec>>,
    retained: RwLock<RetainedStore>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    session_ids: Arc<AtomicU64>,
    /// Round-robin position for choosing a shared subscription's member.
    shared_cursor: AtomicUsize,
    /// The store as this tenant writes to it (closed when it is deleted).
    store: Arc<TenantStore>,
    /// Set once the tenant is deleted: see [`Tenant::dispose`]. Its timers
    /// (session expiry, delayed wills) end early on it.
    deleted: tokio::sync::watch::Sender<bool>,
    usage: Usage,
    /// The tenant's limits and the state enforcing them.
    quota: Quota,
    /// When this process made it (see [`Tenant::created_at`]).
    created_at: std::time::Instant,
}

/// What routing one message did.
#[derive(Debug, Clone)]
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
    /// Not stored nor routed: a retained message over the tenant's quota.
    pub refused: Option<Limit>,
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
#[derive(Debug)]
pub struct Subscribed {
    /// The subscription replaced an existing one with the same filter.
    pub existed: bool,
    /// Retained messages to send now, per the retain handling option.
    pub retained: Vec<Delivery>,
}

impl Tenant {
    pub(crate) fn new(
        id: Arc<str>,
        config: Arc<CoreConfig>,
        node: Arc<Node>,
        session_ids: Arc<AtomicU64>,
        store: Arc<dyn Store>,
    ) -> Tenant {
        Tenant {
            id,
            config,
            node,
            subs: RwLock::new(SubTrie::new()),
            retained: RwLock::new(RetainedStore::default()),
            sessions: Mutex::new(HashMap::new()),
            session_ids,
            shared_cursor: AtomicUsize::new(0),
            store: Arc::new(TenantStore::new(store)),
            deleted: tokio::sync::watch::Sender::new(false),
            usage: Usage::default(),
            quota: Quota::default(),
            created_at: std::time::Instant::now(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The node this tenant's core runs on: message ids and origins.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// What the tenant's clients did since the counters were last taken.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    fn offline_queue_limit(&self) -> usize {
        usize::try_from(self.quota.queued_messages()).unwrap_or(usize::MAX)
    }

    /// Where the tenant's durable state goes.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The tenant's limits (unlimited until set) and their shared state.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Routes a message to every matching subscription (and stores it when it
    /// is retained). A retained message over the tenant's retained quota is
    /// neither stored nor routed (`refused`).
    pub fn publish(&self, message: Arc<Message>) -> Published {
        let mut ticket = 0;
        if message.retain {
            match self.store_retained(&message) {
                Ok(t) => ticket = t,
                Err(limit) => {
                    limit.count();
                    return Published {
                        matched: 0,
                        routed: 0,
                        ticket: 0,
                        congested: None,
                        refused: Some(limit),
                    };
                }
            }
        }
        m::hot().published.increment(1);
        if message.is_metered() {
            self.usage.published(message.payload.len());
        }
        let matches = self.subs.read().match_topic(&message.topic);
        let mut delivered = 0;
        let mut matched = matches.shared.len();
        let mut congested = None;

        // Overlapping subscriptions of one session become one delivery with the
        // highest QoS and every subscription identifier (MQTT 5 §3.3.4).
        let mut normal: SmallVec<[&(SessionRef, SubscriptionSpec); 16]> = matches
            .normal
            .iter()
            .filter(|(s, spec)| !(spec.options.no_local && self.is_origin(&s.0, &message)))
            .collect();
        if normal.len() > 1 {
            normal.sort_unstable_by_key(|(s, _)| s.0.id);
        }
        let mut i = 0;
        while i < normal.len() {
            let (session, first) = normal[i];
            let mut delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(first.options.qos),
                retain: message.retain && first.options.retain_as_published,
                subscription_ids: first.id.into_iter().collect(),
                shared: None,
                stored_seq: None,
            };
            i += 1;
            while i < normal.len() && normal[i].0.0.id == session.0.id {
                let spec = &normal[i].1;
                delivery.qos = delivery.qos.max(message.qos.min(spec.options.qos));
                delivery.retain |= message.retain && spec.options.retain_as_published;
                delivery.subscription_ids.extend(spec.id);
                i += 1;
            }
            matched += 1;
            if let Ok(e) =
                session
                    .0
                    .enqueue_limited(delivery, &self.config, self.offline_queue_limit())
            {
                delivered += 1;
                ticket = ticket.max(e.ticket);
                if e.congested && congested.is_none() {
                    congested = Some(session.0.clone());
                }
            }
        }

        for shared in &matches.shared {
            let group = Arc::new(SharedGroup {
                group: shared.group.clone(),
                filter: shared.filter.clone(),
            });
            if let Some((session, e)) = self.deliver_shared(&message, &group, &shared.members, None)
            {
                delivered += 1;
                ticket = ticket.max(e.ticket);
                if e.congested && congested.is_none() {
                    congested = Some(session);
                }
            }
        }
        Published {
            matched,
            routed: delivered,
            ticket,
            congested,
            refused: None,
        }
    }

    /// Whether `session` published `message` (no-local): session ids are
    /// only unique within a node.
    fn is_origin(&self, session: &Session, message: &Message) -> bool {
        message.origin.session == session.id && message.origin.node == self.node.id()
    }

    /// Queues `message` for one member of a shared subscription, preferring
    /// connected members, in round-robin order; never `exclude`.
    fn deliver_shared(
        &self,
        message: &Arc<Message>,
        group: &Arc<SharedGroup>,
        members: &[(SessionRef, SubscriptionSpec)],
        exclude: Option<u64>,
    ) -> Option<(Arc<Session>, Enqueued)> {
        let candidates: SmallVec<[&(SessionRef, SubscriptionSpec); 8]> = members
            .iter()
            .filter(|(s, _)| Some(s.0.id) != exclude)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let start = self.shared_cursor.fetch_add(1, Ordering::Relaxed);
        let online = |s: &Session| s.is_attached();
        let chosen = (0..candidates.len())
            .map(|k| candidates[(start + k) % candidates.len()])
            .find(|(s, _)| online(&s.0))
            .unwrap_or(candidates[start % candidates.len()]);
        let (SessionRef(session), spec) = chosen;
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(spec.options.qos),
            retain: message.retain && spec.options.retain_as_published,
            subscription_ids: spec.id.into_iter().collect(),
            shared: Some(group.clone()),
            stored_seq: None,
        };
        let enqueued = session
            .enqueue_limited(delivery, &self.config, self.offline_queue_limit())
            .ok()?;
        Some((session.clone(), enqueued))
    }

    /// Sends deliveries a leaving member had not finished to another member of
    /// the same shared subscription.
    fn redispatch_shared(&self, from: &Session, deliveries: Vec<Delivery>) {
        for mut d in deliveries {
            from.forget(d.stored_seq.take());
            let Some(group) = d.shared.clone() else {
                continue;
            };
            let matches = self.subs.read().match_topic(&d.message.topic);
            let members = matches
                .shared
                .iter()
                .find(|s| s.group == group.group && s.filter == group.filter)
                .map_or(&[][..], |s| &s.members[..]);
            if self
                .deliver_shared(&d.message, &group, members, Some(from.id))
                .is_none()
            {
                m::count_drop(m::DropReason::SessionEnded, 1);
            }
        }
    }

    fn store_retained(&self, message: &Arc<Message>) -> Result<Ticket, Limit> {
        let mut retained = self.retained.write();
        let limits = self.quota.limits();
        crate::quota::check_retained(
            &retained,
            message,
            limits.retained_messages,
            limits.retained_bytes,
        )?;
        let change = retained.apply(message);
        // Submitted under the lock so the store sees changes in the same order.
        let ticket = match change {
            RetainChange::Unchanged => 0,
            RetainChange::Deleted => self.store.submit(StoreOp::DeleteRetained {
                tenant: self.id.clone(),
                topic: message.topic.clone(),
            }),
            RetainChange::Set | RetainChange::Replaced => self.store.submit(StoreOp::PutRetained {
                tenant: self.id.clone(),
                message: message.clone(),
            }),
        };
        drop(retained);
        match change {
            RetainChange::Set => metrics::gauge!(m::RETAINED_MESSAGES).increment(1.0),
            RetainChange::Deleted => metrics::gauge!(m::RETAINED_MESSAGES).decrement(1.0),
            RetainChange::Replaced | RetainChange::Unchanged => {}
        }
        Ok(ticket)
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// The unexpired retained messages whose topics match `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.read().matching(filter, unix_ms_now())
    }

    /// Adds (or replaces) a subscription. `filter` is as the client sent it,
    /// `$share/<group>/` prefix included.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        spec: SubscriptionSpec,
    ) -> Result<Subscribed, ReasonCode> {
        let shared = topic::parse_shared(filter).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
        let (inner, group) = match shared {
            Some(s) => (s.filter, Some(s.group)),
            None => (filter, None),
        };
        topic::validate_topic_filter(inner).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
        if group.is_some() && spec.options.no_local {
            // MQTT 5 §3.8.3.1: No Local on a shared subscription is a protocol error.
            return Err(ReasonCode::PROTOCOL_ERROR);
        }
        let existed = self
            .subs
            .write()
            .insert(inner, group, SessionRef(session.clone()), spec)
            .is_some();
        session.add_subscription(Arc::from(filter), spec);

        let send_retained = group.is_none()
            && match spec.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        let retained = if send_retained {
            self.retained
                .read()
                .matching(inner, unix_ms_now())
                .into_iter()
                .map(|message| Delivery {
                    qos: message.qos.min(spec.options.qos),
                    retain: true,
                    subscription_ids: spec.id.into_iter().collect(),
                    shared: None,
                    stored_seq: None,
                    message,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Subscribed { existed, retained })
    }

    /// Removes a subscription; false when there was none.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let removed = session.remove_subscription(filter);
        if removed {
            let (inner, group) = split_shared(filter);
            self.subs
                .write()
                .remove(inner, group, &SessionRef(session.clone()));
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
        let deadline = Instant::now() + self.config.takeover_timeout;
        loop {
            // Decide under the map lock; wait (if we must) after releasing it.
            let step = {
                let mut sessions = self.sessions.lock();
                match sessions.get(client_id).cloned() {
                    Some(session) if session.is_attached() => TakeoverStep::Wait(session),
                    Some(old) if clean_start => {
                        sessions.remove(client_id);
                        TakeoverStep::Proceed(None, Some(old))
                    }
                    Some(old) => TakeoverStep::Proceed(Some(old), None),
                    None => TakeoverStep::Proceed(None, None),
                }
            };
            let resumed = match step {
                TakeoverStep::Wait(session) => {
                    let detached = session.detached();
                    tokio::pin!(detached);
                    detached.as_mut().enable();
                    session.kick(Kick::TAKEN_OVER);
                    if session.is_attached()
                        && tokio::time::timeout_at(deadline, detached).await.is_err()
                    {
                        return Err(ReasonCode::SERVER_BUSY);
                    }
                    continue;
                }
                TakeoverStep::Proceed(resumed, ended) => {
                    if let Some(old) = ended {
                        // Ending the session ends a will's delay (MQTT 5 §3.1.3.2.2).
                        let will = old.take_pending_will();
                        self.end_session(&old);
                        if let Some(will) = will {
                            self.publish_will(old.id, will);
                        }
                    }
                    resumed
                }
            };
            let session_present = resumed.is_some();
            let session = match resumed {
                Some(s) => s,
                None => {
                    let id = self.session_ids.fetch_add(1, Ordering::Relaxed) + 1;
                    let s = Arc::new(Session::new(
                        id,
                        self.id.clone(),
                        Arc::from(client_id),
                        expiry_interval,
                        self.store.clone(),
                    ));
                    let mut sessions = self.sessions.lock();
                    if sessions.contains_key(client_id) {
                        // Another connection for this id got in between: start over.
                        continue;
                    }
                    sessions.insert(Arc::from(client_id), s.clone());
                    metrics::gauge!(m::SESSIONS).increment(1.0);
                    s
                }
            };
            let Some(flight) = session.attach_connection(connection_id, expiry_interval) else {
                continue;
            };
            return Ok(Attachment {
                session,
                session_present,
                flight,
            });
        }
    }

    /// Detaches a connection from its session. `will` is the will to publish
    /// (None after a normal DISCONNECT); `expiry_interval` is the session's
    /// final expiry (0 ends it now).
    pub fn detach(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        flight: FlightState,
        will: Option<Will>,
    ) {
        let Some(detached) =
            session.detach_connection(connection_id, flight, self.config.queue_qos0_offline)
        else {
            return;
        };
        let (expiry, generation) = (detached.expiry_interval, detached.generation);
        self.redispatch_shared(session, detached.orphans);

        if expiry == 0 {
            self.remove_session(session);
            if let Some(will) = will {
                self.publish_will(session.id, will);
            }
            return;
        }
        self.schedule_expiry(session, generation, expiry);
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                self.publish_will(session.id, will);
            } else {
                session.set_pending_will(will, generation);
                let tenant = self.clone();
                let s = session.clone();
                let wait = Duration::from_secs(u64::from(delay.min(expiry)));
                let mut deleted = self.deleted.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => tenant.fire_pending_will(&s, generation),
                        _ = deleted.wait_for(|d| *d) => {}
                    }
                });
            }
        }
    }

    /// Ends a detached session after `expiry` seconds unless it is attached again.
    fn schedule_expiry(self: &Arc<Self>, session: &Arc<Session>, generation: u64, expiry: u32) {
        if expiry != u32::MAX {
            let tenant = self.clone();
            let s = session.clone();
            let mut deleted = self.deleted.subscribe();
            tokio::spawn(async move {
                let wait = tokio::time::sleep(Duration::from_secs(u64::from(expiry)));
                tokio::select! {
                    _ = wait => {}
                    _ = deleted.wait_for(|d| *d) => return,
                }
                if s.detached_since(generation) {
                    tenant.fire_pending_will(&s, generation);
                    tenant.remove_session(&s);
                }
            });
        }
    }

    fn fire_pending_will(&self, session: &Arc<Session>, generation: u64) {
        if let Some(will) = session.take_pending_will_of(generation) {
            self.publish_will(session.id, will);
        }
    }

    fn publish_will(&self, origin: u64, will: Will) {
        let p = will.properties;
        let properties = aerie_proto::PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: p.content_type,
        };
        self.publish(Message::published(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            properties,
            self.node.origin(origin),
            self.node.next_message_id(),
        ));
    }

    /// Removes a session from the map (if it is still the current one for its
    /// client id) and ends it.
    fn remove_session(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions.lock();
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
        }
        drop(sessions);
        self.end_session(session);
    }

    /// Drops a session's subscriptions and queue. Idempotent.
    fn end_session(&self, session: &Arc<Session>) {
        let Some(filters) = session.end() else {
            return;
        };
        let key = SessionRef(session.clone());
        self.subs.write().remove_batch(filters.iter().map(|f| {
            let (inner, group) = split_shared(f);
            (inner, group, key.clone())
        }));
        metrics::gauge!(m::SESSIONS).decrement(1.0);
    }

    /// Recreates a stored session, detached, with its subscriptions, queue
    /// and inbound QoS 2 ids; its expiry clock continues from the record.
    pub(crate) fn restore_session(self: &Arc<Self>, loaded: LoadedSession) {
        let id = self.session_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let expiry = loaded.record.expiry_interval;
        let session = Arc::new(Session::new(
            id,
            self.id.clone(),
            loaded.client_id.clone(),
            expiry,
            self.store.clone(),
        ));
        {
            let key = SessionRef(session.clone());
            let mut subs = self.subs.write();
            for (filter, spec) in &loaded.record.subscriptions {
                let (inner, group) = split_shared(filter);
                subs.insert(inner, group, key.clone(), *spec);
            }
        }
        session.restore(
            &loaded.record.subscriptions,
            loaded.queue,
            loaded.inbound_qos2,
        );
        self.sessions
            .lock()
            .insert(loaded.client_id, session.clone());
        metrics::gauge!(m::SESSIONS).increment(1.0);
        let remaining = match (loaded.record.expires_at_ms, expiry) {
            (_, u32::MAX) => u32::MAX,
            // Attached when the process stopped: the clock starts now.
            (None, e) => e,
            (Some(at), _) => u32::try_from(at.saturating_sub(unix_ms_now()).div_ceil(1000))
                .unwrap_or(u32::MAX - 1),
        };
        self.schedule_expiry(&session, 1, remaining);
    }

    /// Puts back a stored retained message.
    pub(crate) fn restore_retained(&self, message: Arc<Message>) {
        if self.retained.write().apply(&message) == RetainChange::Set {
            metrics::gauge!(m::RETAINED_MESSAGES).increment(1.0);
        }
    }

    /// Messages queued in all of this tenant's sessions (for the queue-depth gauge).
    pub fn queued_messages(&self) -> usize {
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        sessions.iter().map(|s| s.queued()).sum()
    }

    /// Subscriptions of all of this tenant's sessions.
    pub fn subscription_count(&self) -> usize {
        self.subs.read().len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// The tenant was deleted: forgets everything it had, in memory and on
    /// disk (sessions, queues, subscriptions, retained messages), ends its
    /// timers, and drops any write it would still make. Its connections
    /// should be gone first (the gateway waits for that); a late one finds
    /// its session ended and writes nothing.
    pub fn dispose(&self) {
        self.deleted.send_replace(true);
        self.store.delete_tenant(self.id.clone());
        let sessions: Vec<_> = self.sessions.lock().drain().map(|(_, s)| s).collect();
        for s in &sessions {
            self.end_session(s);
        }
        let retained = self.retained.write().clear();
        metrics::gauge!(m::RETAINED_MESSAGES).decrement(retained as f64);
    }

    /// When this process made the tenant's core: on its first client or HTTP
    /// publish, or at start-up from the store. A directory loaded before
    /// then may not know the tenant yet without it having been deleted.
    pub fn created_at(&self) -> std::time::Instant {
        self.created_at
    }

    /// Asks every attached connection to close (server shutdown, tenant suspended).
    pub fn kick_all(&self, kick: Kick) {
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        for s in sessions {
            s.kick(kick);
        }
    }
}

enum TakeoverStep {
    /// The session is attached elsewhere: kick that connection and wait.
    Wait(Arc<Session>),
    /// Go ahead: resume this session (if any), after ending that one (if any).
    Proceed(Option<Arc<Session>>, Option<Arc<Session>>),
}

/// `$share/g/f` → (`f`, Some(`g`)); anything else → (filter, None).
fn split_shared(filter: &str) -> (&str, Option<&str>) {
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
        Message::published(
            "t".into(),
            bytes::Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Default::default(),
            origin,
            Default::default(),
        )
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
}
