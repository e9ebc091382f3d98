//! The core calls its seams as their contracts say: recording
//! implementations stand in for the scale-out shape's.

use std::sync::Arc;

use aerie_proto::{QoS, ReasonCode, SubscriptionOptions};
use parking_lot::Mutex;

use super::*;
use crate::message::{Message, Origin};
use crate::node::NodeId;
use crate::quota::Limit;
use crate::session::{Kick, SubscriptionSpec};
use crate::store::{Store, Ticket};
use crate::{Broker, CoreConfig, NullStore};

#[derive(Default)]
struct RecordingBackbone {
    published: Mutex<Vec<String>>,
    interest: Mutex<Vec<(String, Option<String>, bool)>>,
}

impl Backbone for RecordingBackbone {
    fn publish(&self, _tenant: &Arc<str>, message: &Arc<Message>) -> bool {
        self.published.lock().push(message.topic.to_string());
        false
    }
    fn interest(
        &self,
        _tenant: &Arc<str>,
        filter: &str,
        group: Option<&str>,
        held: bool,
    ) -> Option<BoxFuture<()>> {
        self.interest
            .lock()
            .push((filter.into(), group.map(Into::into), held));
        None
    }
}

/// Refuses every claim with `refuse`, or records claims and releases.
#[derive(Default)]
struct RecordingOwners {
    refuse: Option<ReasonCode>,
    log: Mutex<Vec<String>>,
}

impl SessionOwners for RecordingOwners {
    fn claim(
        &self,
        _tenant: &Arc<str>,
        client_id: &Arc<str>,
        clean_start: bool,
    ) -> BoxFuture<Result<Claim, ReasonCode>> {
        self.log
            .lock()
            .push(format!("claim {client_id} {clean_start}"));
        Box::pin(std::future::ready(
            self.refuse.map_or(Ok(Claim::Claimed), Err),
        ))
    }
    fn release(&self, _tenant: &Arc<str>, client_id: &Arc<str>) {
        self.log.lock().push(format!("release {client_id}"));
    }
}

fn broker(backbone: Arc<dyn Backbone>, owners: Arc<dyn SessionOwners>) -> Broker {
    let seams = Seams {
        backbone,
        owners,
        ..Seams::embedded()
    };
    Broker::with_seams(CoreConfig::default(), Arc::new(NullStore::new()), seams)
}

fn spec() -> SubscriptionSpec {
    SubscriptionSpec {
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
        id: None,
    }
}

fn message(topic: &str, origin: Origin) -> Arc<Message> {
    Message::published(
        topic.into(),
        bytes::Bytes::from_static(b"x"),
        QoS::AtLeastOnce,
        false,
        Default::default(),
        origin,
        Default::default(),
    )
}

#[tokio::test]
async fn interest_follows_subscriptions_and_published_messages_go_to_the_backbone_once() {
    let backbone = Arc::new(RecordingBackbone::default());
    let broker = broker(backbone.clone(), Arc::new(LocalOwners));
    let tenant = broker.tenant("t");
    let s = tenant.attach("c", true, 0, 1).await.unwrap().session;
    tenant.subscribe(&s, "a/+", spec()).unwrap();
    tenant.subscribe(&s, "a/+", spec()).unwrap(); // replaced, not added
    tenant.subscribe(&s, "$share/g/b", spec()).unwrap();
    assert!(tenant.unsubscribe(&s, "a/+"));

    let origin = tenant.node().origin(s.id);
    tenant.publish(message("b", origin));
    assert_eq!(*backbone.published.lock(), ["b"]);
    // What another node published reaches this node's sessions, and is not
    // sent on again.
    let elsewhere = Origin {
        node: NodeId(tenant.node().id().0 ^ 1),
        session: 1,
    };
    assert_eq!(tenant.router().deliver(&message("b", elsewhere)).routed, 1);
    assert_eq!(backbone.published.lock().len(), 1);

    tenant.detach(&s, 1, Default::default(), None); // expiry 0: the session ends
    let interest = backbone.interest.lock().clone();
    let held = |f: &str, g: Option<&str>, on| (f.to_string(), g.map(String::from), on);
    assert_eq!(
        interest,
        [
            held("a/+", None, true),
            held("b", Some("g"), true),
            held("a/+", None, false),
            held("b", Some("g"), false),
        ]
    );
}

#[tokio::test]
async fn a_refused_claim_refuses_the_connect_and_an_ended_session_is_released() {
    let refusing = Arc::new(RecordingOwners {
        refuse: Some(ReasonCode::SERVER_BUSY),
        ..Default::default()
    });
    let tenant = broker(Arc::new(LocalBackbone), refusing.clone()).tenant("t");
    assert_eq!(
        tenant.attach("c", true, 0, 1).await.unwrap_err(),
        ReasonCode::SERVER_BUSY
    );
    assert_eq!(tenant.session_count(), 0);

    let owners = Arc::new(RecordingOwners::default());
    let tenant = broker(Arc::new(LocalBackbone), owners.clone()).tenant("t");
    let s = tenant.attach("c", false, 0, 1).await.unwrap().session;
    tenant.detach(&s, 1, Default::default(), None);
    assert_eq!(*owners.log.lock(), ["claim c false", "release c"]);
}

#[tokio::test]
async fn a_local_takeover_keeps_the_ownership_its_claim_took() {
    let owners = Arc::new(RecordingOwners::default());
    let tenant = broker(Arc::new(LocalBackbone), owners.clone()).tenant("t");
    let old = tenant.attach("c", true, 0, 1).await.unwrap().session;
    let attaching = tokio::spawn({
        let tenant = tenant.clone();
        async move { tenant.attach("c", true, 0, 2).await.unwrap().session }
    });
    // The old connection is asked to close, and does.
    while old.take_kick().is_none() {
        tokio::task::yield_now().await;
    }
    tenant.detach(&old, 1, Default::default(), None);
    let new = attaching.await.unwrap();
    // The replaced session released nothing: the new one holds the claim.
    assert_eq!(*owners.log.lock(), ["claim c true", "claim c true"]);
    tenant.detach(&new, 2, Default::default(), None);
    assert_eq!(
        *owners.log.lock(),
        ["claim c true", "claim c true", "release c"]
    );
}

#[tokio::test]
async fn a_takeover_on_another_node_closes_the_local_connection_with_0x8e() {
    let tenant = Broker::new(CoreConfig::default()).tenant("t");
    let s = tenant.attach("c", true, 0, 1).await.unwrap().session;
    assert!(tenant.sessions().taken_over_elsewhere("c"));
    assert_eq!(s.take_kick(), Some(Kick::TAKEN_OVER));
    assert!(!tenant.sessions().taken_over_elsewhere("nobody"));
}

/// Answers `set` and `matching` only when the test says so.
struct LateRetained {
    inner: Arc<dyn RetainedStore>,
    go: tokio::sync::watch::Receiver<bool>,
}

impl RetainedStore for LateRetained {
    fn set(
        &self,
        message: &Arc<Message>,
        quota: RetainedQuota,
    ) -> BoxFuture<Result<Ticket, Limit>> {
        let (mut go, set) = (self.go.clone(), self.inner.set(message, quota));
        Box::pin(async move {
            let _ = go.wait_for(|g| *g).await;
            set.await
        })
    }
    fn matching(&self, filter: &str) -> BoxFuture<Vec<Arc<Message>>> {
        let (mut go, found) = (self.go.clone(), self.inner.matching(filter));
        Box::pin(async move {
            let _ = go.wait_for(|g| *g).await;
            found.await
        })
    }
    fn count(&self) -> usize {
        self.inner.count()
    }
    fn restore(&self, message: Arc<Message>) {
        self.inner.restore(message)
    }
    fn clear(&self) {
        self.inner.clear()
    }
}

struct LateRetainedStores(tokio::sync::watch::Receiver<bool>);

impl RetainedStores for LateRetainedStores {
    fn for_tenant(&self, tenant: &Arc<str>, store: Arc<dyn Store>) -> Arc<dyn RetainedStore> {
        Arc::new(LateRetained {
            inner: LocalRetainedStores.for_tenant(tenant, store),
            go: self.0.clone(),
        })
    }
}

#[tokio::test]
async fn a_retained_store_that_answers_later_still_routes_and_delivers_on_subscribe() {
    let (go, wait) = tokio::sync::watch::channel(false);
    let seams = Seams {
        retained: Arc::new(LateRetainedStores(wait)),
        ..Seams::embedded()
    };
    let broker = Broker::with_seams(CoreConfig::default(), Arc::new(NullStore::new()), seams);
    let tenant = broker.tenant("t");
    let live = tenant.attach("live", true, 0, 1).await.unwrap().session;
    tenant.subscribe(&live, "r", spec()).unwrap();
    tenant.publish(Message::published(
        "r".into(),
        bytes::Bytes::from_static(b"kept"),
        QoS::AtLeastOnce,
        true,
        Default::default(),
        Origin::default(),
        Default::default(),
    ));
    assert_eq!(live.queued(), 0, "not routed before the store answered");

    let late = tenant.attach("late", true, 0, 2).await.unwrap().session;
    let subscribed = tenant.subscribe(&late, "r", spec()).unwrap();
    assert!(subscribed.retained.is_empty());
    let later = subscribed
        .retained_later
        .expect("a store that answers later: its lookup is handed to the caller");
    go.send_replace(true);
    // The retained copy, for the connection to queue after its SUBACK.
    let retained = later.await;
    assert_eq!(retained.len(), 1);
    assert!(retained[0].retain);
    for _ in 0..100 {
        if live.queued() == 1 && late.queued() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    // And the routed one, to both.
    assert_eq!((live.queued(), late.queued()), (1, 1));
}

/// A backbone like the NATS one: it reaches other nodes, routes shared
/// groups itself, and makes SUBACKs wait for a new interest.
struct GroupRoutingBackbone(tokio::sync::watch::Receiver<bool>);

impl Backbone for GroupRoutingBackbone {
    fn publish(&self, _tenant: &Arc<str>, _message: &Arc<Message>) -> bool {
        true
    }
    fn interest(
        &self,
        _tenant: &Arc<str>,
        _filter: &str,
        _group: Option<&str>,
        held: bool,
    ) -> Option<BoxFuture<()>> {
        let mut live = self.0.clone();
        held.then(|| -> BoxFuture<()> {
            Box::pin(async move {
                let _ = live.wait_for(|l| *l).await;
            })
        })
    }
    fn routes_shared_groups(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn with_a_backbone_that_routes_groups_the_publishing_node_serves_only_plain_subscriptions() {
    let (go, live) = tokio::sync::watch::channel(false);
    let broker = broker(Arc::new(GroupRoutingBackbone(live)), Arc::new(LocalOwners));
    let tenant = broker.tenant("t");
    let member = tenant.attach("member", true, 0, 1).await.unwrap().session;
    let plain = tenant.attach("plain", true, 0, 2).await.unwrap().session;
    let mut subscribed = tenant.subscribe(&member, "$share/g/a", spec()).unwrap();
    let mut pending = subscribed.live.take().expect("a new interest to wait for");
    assert!(
        poll_once(&mut pending).is_pending(),
        "live before the backbone said so"
    );
    go.send_replace(true);
    pending.await;
    tenant.subscribe(&plain, "a", spec()).unwrap();

    let published = tenant.publish(message("a", tenant.node().origin(plain.id)));
    assert_eq!((plain.queued(), member.queued()), (1, 0));
    assert_eq!(published.routed, 1);
    // The group's member gets it when the backbone picks this node for it.
    let m = message("a", Origin::default());
    assert_eq!(tenant.router().deliver_to_group(&m, "g", "a").routed, 1);
    assert_eq!(tenant.router().deliver_to_group(&m, "other", "a").routed, 0);
    assert_eq!(member.queued(), 1);
    // From another node: the plain subscription only.
    assert_eq!(tenant.router().deliver_to_subscribers(&m).routed, 1);
    assert_eq!((plain.queued(), member.queued()), (2, 1));

    // Nobody here: still "matched", since other nodes may have subscribers.
    let nobody = tenant.publish(message("b", Origin::default()));
    assert_eq!((nobody.matched, nobody.routed), (1, 0));
}

/// A log like the JetStream one: each append takes the next ticket; a
/// topic named `huge` is one it can never keep.
#[derive(Default)]
struct RecordingLog(Mutex<Vec<(String, QoS)>>);

impl MessageLog for RecordingLog {
    fn append(&self, _tenant: &Arc<str>, message: &Arc<Message>) -> Result<Ticket, Limit> {
        if &*message.topic == "huge" {
            return Err(Limit::PacketSize);
        }
        let mut appended = self.0.lock();
        appended.push((message.topic.to_string(), message.qos));
        Ok(100 + appended.len() as Ticket)
    }

    fn append_resent(&self, _tenant: &Arc<str>, message: &Arc<Message>) -> BoxFuture<Option<bool>> {
        // Held already when one with its topic was appended.
        let held = self.0.lock().iter().any(|(t, _)| *t == *message.topic);
        if !held {
            self.0.lock().push((message.topic.to_string(), message.qos));
        }
        Box::pin(std::future::ready(Some(held)))
    }
}

fn published(topic: &str, qos: QoS) -> Arc<Message> {
    Message::published(
        topic.into(),
        bytes::Bytes::from_static(b"p"),
        qos,
        false,
        Default::default(),
        Origin::default(),
        Default::default(),
    )
}

/// A broker on `seams`, its tenant `t`, and a session there subscribed to
/// everything.
async fn subscribed_tenant(seams: Seams) -> (Broker, Arc<crate::Tenant>, Arc<crate::Session>) {
    let broker = Broker::with_seams(CoreConfig::default(), Arc::new(NullStore::new()), seams);
    let tenant = broker.tenant("t");
    let sub = tenant.attach("sub", true, 0, 1).await.unwrap().session;
    tenant.subscribe(&sub, "#", spec()).unwrap();
    (broker, tenant, sub)
}

#[tokio::test]
async fn a_qos_1_or_2_publish_is_appended_to_the_log_and_acknowledged_at_its_ticket() {
    let log = Arc::new(RecordingLog::default());
    let seams = Seams {
        log: log.clone(),
        ..Seams::embedded()
    };
    let (_broker, tenant, sub) = subscribed_tenant(seams).await;

    assert_eq!(tenant.publish(published("a", QoS::AtLeastOnce)).ticket, 101);
    assert_eq!(tenant.publish(published("b", QoS::AtMostOnce)).ticket, 0);
    assert_eq!(tenant.publish(published("c", QoS::ExactlyOnce)).ticket, 102);
    assert_eq!(
        *log.0.lock(),
        [
            ("a".to_owned(), QoS::AtLeastOnce),
            ("c".to_owned(), QoS::ExactlyOnce)
        ],
        "QoS 0 is never appended"
    );
    assert_eq!(sub.queued(), 3, "routed at once, whatever the log");

    // One the log can never keep is refused, not routed.
    let refused = tenant.publish(published("huge", QoS::AtLeastOnce));
    assert_eq!(refused.refused, Some(Limit::PacketSize));
    assert_eq!(sub.queued(), 3);
}

/// Records kept off the node, as the scale-out shape's: a QoS 2 PUBLISH's
/// packet id is recorded (answering `keeps`) before it is routed.
struct RecordingRecords {
    keeps: bool,
    kept: Mutex<Vec<(u16, crate::MessageId)>>,
}

impl SessionRecords for RecordingRecords {
    fn changed(&self, _session: &Arc<crate::Session>) {}
    fn ended(&self, _tenant: &Arc<str>, _client_id: &Arc<str>, _starts_over: bool) {}
    fn resume(
        &self,
        _tenant: &Arc<str>,
        _client_id: &Arc<str>,
        _keep_at_most: usize,
    ) -> BoxFuture<Option<Resumed>> {
        Box::pin(std::future::ready(None))
    }
    fn keep_inbound_qos2(
        &self,
        _session: &Arc<crate::Session>,
        packet_id: u16,
        id: crate::MessageId,
    ) -> Option<BoxFuture<bool>> {
        self.kept.lock().push((packet_id, id));
        Some(Box::pin(std::future::ready(self.keeps)))
    }
}

#[tokio::test]
async fn a_qos_2_publish_is_routed_only_once_its_packet_id_is_recorded() {
    for keeps in [true, false] {
        let log = Arc::new(RecordingLog::default());
        let records = Arc::new(RecordingRecords {
            keeps,
            kept: Mutex::default(),
        });
        let seams = Seams {
            log: log.clone(),
            records: records.clone(),
            ..Seams::embedded()
        };
        let (_broker, tenant, sub) = subscribed_tenant(seams).await;
        let publisher = tenant.attach("pub", true, 300, 2).await.unwrap().session;

        let message = published("a", QoS::ExactlyOnce);
        let id = message.id;
        let later = tenant.publish_exactly_once(&publisher, 7, message);
        assert_eq!(*records.kept.lock(), [(7, id)]);
        let outcome = later.settled().await;
        if keeps {
            assert_eq!(
                outcome,
                crate::Later::Kept(101),
                "acknowledged at its log ticket"
            );
            assert_eq!(sub.queued(), 1);
        } else {
            assert_eq!(outcome, crate::Later::Unavailable);
            assert_eq!(
                (sub.queued(), log.0.lock().len()),
                (0, 0),
                "neither routed nor kept"
            );
        }
    }
}

#[tokio::test]
async fn a_resent_qos_2_publish_is_routed_only_if_the_log_did_not_hold_it() {
    let log = Arc::new(RecordingLog::default());
    let seams = Seams {
        log: log.clone(),
        ..Seams::embedded()
    };
    let (_broker, tenant, sub) = subscribed_tenant(seams).await;

    // The node that died had appended (and routed) it.
    log.0.lock().push(("kept".to_owned(), QoS::ExactlyOnce));
    let outcome = tenant
        .publish_resent(published("kept", QoS::ExactlyOnce))
        .settled()
        .await;
    assert_eq!((outcome, sub.queued()), (crate::Later::Kept(0), 0));

    // It died before its append: the resend is the first copy.
    let outcome = tenant
        .publish_resent(published("lost", QoS::ExactlyOnce))
        .settled()
        .await;
    assert!(
        matches!(outcome, crate::Later::Kept(t) if t > 0),
        "{outcome:?}"
    );
    assert_eq!(sub.queued(), 1);
}
