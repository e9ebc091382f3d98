//! The routing half of a tenant: its subscription trie, retained messages,
//! and delivery of a message to the local sessions that match it (one member
//! of each shared group). It knows sessions only as trie entries; attaching,
//! detaching and ending them is the session table's job.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use aerie_proto::{QoS, ReasonCode, RetainHandling, topic};
use parking_lot::RwLock;
use smallvec::SmallVec;

use super::{Later, Published, Subscribed, split_shared};
use crate::config::CoreConfig;
use crate::message::{Delivery, Message, SharedGroup};
use crate::metrics as m;
use crate::node::Node;
use crate::quota::Quota;
use crate::seams::{
    Backbone, BoxFuture, MessageLog, RetainedQuota, RetainedStore, Seams, poll_once,
};
use crate::session::{Enqueued, Session, SessionRef, SubscriptionSpec};
use crate::store::TenantStore;
use crate::trie::SubTrie;
use crate::usage::Usage;

pub struct Router {
    tenant: Arc<str>,
    config: Arc<CoreConfig>,
    node: Arc<Node>,
    subs: RwLock<SubTrie<SessionRef, SubscriptionSpec>>,
    /// Round-robin position for choosing a shared subscription's member.
    shared_cursor: AtomicUsize,
    retained: Arc<dyn RetainedStore>,
    backbone: Arc<dyn Backbone>,
    log: Arc<dyn MessageLog>,
    usage: Usage,
    /// The tenant's limits and the state enforcing them.
    quota: Quota,
}

impl Router {
    pub(crate) fn new(
        tenant: Arc<str>,
        config: Arc<CoreConfig>,
        node: Arc<Node>,
        store: Arc<TenantStore>,
        seams: &Seams,
    ) -> Router {
        Router {
            tenant: tenant.clone(),
            config,
            node,
            subs: RwLock::new(SubTrie::new()),
            shared_cursor: AtomicUsize::new(0),
            retained: seams.retained.for_tenant(&tenant, store.clone()),
            backbone: seams.backbone.clone(),
            log: seams.log.clone(),
            usage: Usage::default(),
            quota: Quota::default(),
        }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// See [`Backbone::backlogged`].
    pub fn backbone_backlogged(&self, waiter: &Arc<crate::session::Session>) -> bool {
        self.backbone.backlogged(waiter)
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    pub(crate) fn offline_queue_limit(&self) -> usize {
        usize::try_from(self.quota.queued_messages()).unwrap_or(usize::MAX)
    }

    /// Routes a message published on this node (a client's PUBLISH, a
    /// will, an HTTP publish): stores it when it is retained, delivers it to
    /// this node's sessions, and hands it to the backbone for the other
    /// nodes. A retained message over the tenant's retained quota is neither
    /// stored nor routed (`refused`).
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> Published {
        if !message.retain {
            return self.accept(message);
        }
        let limits = self.quota.limits();
        let quota = RetainedQuota {
            max_messages: limits.retained_messages,
            max_bytes: limits.retained_bytes,
        };
        let mut set = self.retained.set(&message, quota);
        match poll_once(&mut set) {
            Poll::Ready(Ok(ticket)) => {
                let mut published = self.accept(message);
                published.ticket = published.ticket.max(ticket);
                published
            }
            Poll::Ready(Err(limit)) => {
                self.quota.refused(limit);
                Published {
                    refused: Some(limit),
                    ..Published::default()
                }
            }
            Poll::Pending => {
                // A retained store that answers later (over the network):
                // route once it has, and tell the publisher's connection.
                let router = self.clone();
                let (told, stored_later) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let later = match set.await {
                        Ok(ticket) => match router.accept(message) {
                            Published {
                                refused: Some(limit),
                                ..
                            } => Later::Refused(limit),
                            // Appended to the message log too: the ack waits
                            // for that, as any other (bounded by the log).
                            published => Later::Kept(published.ticket.max(ticket)),
                        },
                        Err(limit) => {
                            router.quota.refused(limit);
                            Later::Refused(limit)
                        }
                    };
                    let _ = told.send(later);
                });
                Published {
                    stored_later: Some(stored_later),
                    ..Published::default()
                }
            }
        }
    }

    /// Publishes `message` once `first` allows it (`Some(true)`), in a
    /// task; `Some(false)`: kept and routed already (a resend), `None`:
    /// the cluster could not say in time. The publisher's connection
    /// waits for the outcome ([`Published::stored_later`]).
    pub(super) fn publish_when(
        self: &Arc<Self>,
        message: Arc<Message>,
        first: BoxFuture<Option<bool>>,
    ) -> Published {
        let router = self.clone();
        let (told, stored_later) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let later = match first.await {
                Some(true) => router.publish(message).settled().await,
                Some(false) => Later::Kept(0),
                None => Later::Unavailable,
            };
            let _ = told.send(later);
        });
        Published {
            stored_later: Some(stored_later),
            ..Published::default()
        }
    }

    /// See [`MessageLog::append_resent`].
    pub(super) fn limits_changed(&self, limits: &crate::quota::TenantLimits) {
        self.log.limits_changed(&self.tenant, limits);
    }

    pub(super) fn append_resent(&self, message: &Arc<Message>) -> BoxFuture<Option<bool>> {
        self.log.append_resent(&self.tenant, message)
    }

    /// Appends a QoS 1/2 message to the message log, counts it in,
    /// delivers it here, and sends it to the other nodes. One the log can
    /// never keep is refused (neither routed nor acknowledged as kept).
    fn accept(&self, message: Arc<Message>) -> Published {
        let logged = match message.qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce | QoS::ExactlyOnce => match self.log.append(&self.tenant, &message) {
                Ok(ticket) => ticket,
                Err(limit) => {
                    self.quota.refused(limit);
                    return Published {
                        refused: Some(limit),
                        ..Published::default()
                    };
                }
            },
        };
        m::hot().published.increment(1);
        if message.is_metered() {
            self.usage.published(message.payload.len());
        }
        let mut published = self.deliver_matching(&message, !self.backbone.routes_shared_groups());
        if self.backbone.publish(&self.tenant, &message) {
            // Other nodes may have subscribers: not ours to say there are none.
            published.matched = published.matched.max(1);
        }
        published.ticket = published.ticket.max(logged);
        published
    }

    /// Delivers a message to this node's matching sessions (one member of
    /// each shared group): one published here, or one the backbone brought
    /// from another node.
    pub fn deliver(&self, message: &Arc<Message>) -> Published {
        self.deliver_matching(message, true)
    }

    /// Delivers a message another node published to this node's matching
    /// sessions, shared subscriptions left out: for a backbone that routes
    /// shared groups itself ([`Router::deliver_to_group`]).
    pub fn deliver_to_subscribers(&self, message: &Arc<Message>) -> Published {
        self.deliver_matching(message, false)
    }

    /// Delivers a message to one local member of the shared subscription
    /// `$share/<group>/<filter>`: the backbone chose this node for it.
    pub fn deliver_to_group(&self, message: &Arc<Message>, group: &str, filter: &str) -> Published {
        let matches = self.subs.read().match_topic(&message.topic);
        let Some(shared) = matches
            .shared
            .iter()
            .find(|s| &*s.group == group && &*s.filter == filter)
        else {
            return Published::default();
        };
        let group = Arc::new(SharedGroup {
            group: shared.group.clone(),
            filter: shared.filter.clone(),
        });
        let Some((session, e)) = self.deliver_shared(message, &group, &shared.members, None) else {
            return Published {
                matched: 1,
                ..Published::default()
            };
        };
        Published {
            matched: 1,
            routed: 1,
            ticket: e.ticket,
            congested: e.congested.then_some(session),
            ..Published::default()
        }
    }

    /// Delivers to the matching sessions, and to one member of each matching
    /// shared group if `with_shared`.
    fn deliver_matching(&self, message: &Arc<Message>, with_shared: bool) -> Published {
        let mut ticket = 0;
        let matches = self.subs.read().match_topic(&message.topic);
        let shared_groups = if with_shared {
            &matches.shared[..]
        } else {
            &[]
        };
        let mut delivered = 0;
        let mut matched = shared_groups.len();
        let mut congested = None;

        // Overlapping subscriptions of one session become one delivery with the
        // highest QoS and every subscription identifier (MQTT 5 §3.3.4).
        let mut normal: SmallVec<[&(SessionRef, SubscriptionSpec); 16]> = matches
            .normal
            .iter()
            .filter(|(s, spec)| !(spec.options.no_local && self.is_origin(&s.0, message)))
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
            if let Ok(e) = session
                .0
                .enqueue_limited(delivery, &self.config, Some(&self.quota))
            {
                delivered += 1;
                ticket = ticket.max(e.ticket);
                if e.congested && congested.is_none() {
                    congested = Some(session.0.clone());
                }
            }
        }

        for shared in shared_groups {
            let group = Arc::new(SharedGroup {
                group: shared.group.clone(),
                filter: shared.filter.clone(),
            });
            if let Some((session, e)) = self.deliver_shared(message, &group, &shared.members, None)
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
            ..Published::default()
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
            .enqueue_limited(delivery, &self.config, Some(&self.quota))
            .ok()?;
        Some((session.clone(), enqueued))
    }

    /// Sends deliveries a leaving member had not finished to another member of
    /// the same shared subscription.
    pub(crate) fn redispatch_shared(&self, from: &Session, deliveries: Vec<Delivery>) {
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

    pub fn retained_count(&self) -> usize {
        self.retained.count()
    }

    /// The unexpired retained messages whose topics match `filter`.
    pub async fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.matching(filter).await
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
        let live = if existed {
            None
        } else {
            self.backbone.interest(&self.tenant, inner, group, true)
        };

        let send_retained = group.is_none()
            && match spec.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if !send_retained {
            return Ok(Subscribed {
                existed,
                retained: Vec::new(),
                retained_later: None,
                live,
            });
        }
        let mut matching = self.retained.matching(inner);
        let (retained, retained_later) = match poll_once(&mut matching) {
            Poll::Ready(found) => (retained_deliveries(found, spec), None),
            // A retained store that answers later (over the network): the
            // connection queues them once it answered, after the SUBACK.
            Poll::Pending => {
                let later: crate::seams::BoxFuture<Vec<Delivery>> =
                    Box::pin(async move { retained_deliveries(matching.await, spec) });
                (Vec::new(), Some(later))
            }
        };
        Ok(Subscribed {
            existed,
            retained,
            retained_later,
            live,
        })
    }

    /// Removes a subscription; false when there was none.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let removed = session.remove_subscription(filter);
        if removed {
            let (inner, group) = split_shared(filter);
            self.subs
                .write()
                .remove(inner, group, &SessionRef(session.clone()));
            let _ = self.backbone.interest(&self.tenant, inner, group, false);
        }
        removed
    }

    /// Takes an ended session's subscriptions out of the trie.
    pub(crate) fn drop_subscriptions(&self, session: &Arc<Session>, filters: &[Arc<str>]) {
        let key = SessionRef(session.clone());
        self.subs.write().remove_batch(filters.iter().map(|f| {
            let (inner, group) = split_shared(f);
            (inner, group, key.clone())
        }));
        for f in filters {
            let (inner, group) = split_shared(f);
            let _ = self.backbone.interest(&self.tenant, inner, group, false);
        }
    }

    /// Puts a restored session's subscriptions back into the trie.
    pub(crate) fn restore_subscriptions(
        &self,
        session: &Arc<Session>,
        subscriptions: &[(Arc<str>, SubscriptionSpec)],
    ) {
        let key = SessionRef(session.clone());
        let mut subs = self.subs.write();
        for (filter, spec) in subscriptions {
            let (inner, group) = split_shared(filter);
            subs.insert(inner, group, key.clone(), *spec);
            // Restored at start-up, before any client: nothing waits for it.
            let _ = self.backbone.interest(&self.tenant, inner, group, true);
        }
    }

    /// Puts back the subscriptions of a session resumed from another node's
    /// record; resolves once this node's interest in them is live.
    pub(crate) fn resume_subscriptions(
        &self,
        session: &Arc<Session>,
        subscriptions: &[(Arc<str>, SubscriptionSpec)],
    ) -> Vec<crate::seams::BoxFuture<()>> {
        let key = SessionRef(session.clone());
        let mut live = Vec::new();
        let mut subs = self.subs.write();
        for (filter, spec) in subscriptions {
            let (inner, group) = split_shared(filter);
            if subs.insert(inner, group, key.clone(), *spec).is_none() {
                live.extend(self.backbone.interest(&self.tenant, inner, group, true));
            }
        }
        live
    }

    /// Puts back a stored retained message.
    pub(crate) fn restore_retained(&self, message: Arc<Message>) {
        self.retained.restore(message);
    }

    /// Forgets every retained message (the tenant was deleted).
    pub(crate) fn clear_retained(&self) {
        self.retained.clear();
    }

    /// Subscriptions of all of this tenant's sessions.
    pub fn subscription_count(&self) -> usize {
        self.subs.read().len()
    }

    /// What [`Published::matched`] would count for a message on `topic`
    /// published here by no session (an HTTP publish), without delivering:
    /// this node's sessions with a matching subscription, plus its shared
    /// groups that match.
    pub fn matching_subscriptions(&self, topic: &str) -> usize {
        let matches = self.subs.read().match_topic(topic);
        let mut sessions: SmallVec<[u64; 16]> =
            matches.normal.iter().map(|(s, _)| s.0.id).collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions.len() + matches.shared.len()
    }
}

/// Retained messages as deliveries to a new subscription.
fn retained_deliveries(found: Vec<Arc<Message>>, spec: SubscriptionSpec) -> Vec<Delivery> {
    found
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
}
