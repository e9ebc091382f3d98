//! The retained quota against a real nats-server (JetStream), through the
//! `RetainedStore` seam of several nodes at once: sets racing on three
//! nodes keep exactly the tenant's count and bytes; a usage record left
//! wrong (a node killed between its reservation and its publish) is set
//! right from the stream; an expired message's room comes back.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aerie_cluster::retained::{JetStreamRetainedStores, Timing};
use aerie_core::message::{Message, MessageId, Origin};
use aerie_core::seams::{RetainedQuota, RetainedStore, RetainedStores};
use aerie_core::store::NullStore;
use aerie_core::{Limit, Ticket};
use aerie_proto::{PublishProperties, QoS};
use bytes::Bytes;
use futures_util::future::join_all;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

mod common;
use common::{Nats, connect, nats_server};

/// Reconciles quick enough for a test.
const FAST: Timing = Timing {
    grace: Duration::from_millis(200),
    every: Duration::from_millis(500),
};

fn retained(topic: &str, payload: &[u8], expiry_secs: Option<u32>) -> Arc<Message> {
    Message::published(
        topic.into(),
        Bytes::copy_from_slice(payload),
        QoS::AtLeastOnce,
        true,
        PublishProperties {
            message_expiry_interval: expiry_secs,
            ..Default::default()
        },
        Origin::default(),
        MessageId::default(),
    )
}

/// The process's metrics, as `/metrics` renders them; installed by the
/// first test that asks (before it counts anything).
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder")
    })
}

/// The value of counter `name` with `labels` (0 before its first count).
fn counter(name: &str, labels: &str) -> f64 {
    let key = format!("{name}{labels}");
    metrics()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix(&key)?.trim().parse::<f64>().ok())
        .sum()
}

/// A node's retained store of tenant `t1`, once the stream exists.
async fn node(nats: &Nats, prefix: &str, timing: Timing) -> Arc<dyn RetainedStore> {
    let client = connect(nats).await;
    let stores = JetStreamRetainedStores::with_timing(client.clone(), prefix, 1, timing);
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while js.get_stream(format!("{prefix}_retained")).await.is_err() {
        assert!(Instant::now() < deadline, "the stream was not made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stores.for_tenant(&Arc::from("t1"), Arc::new(NullStore::new()))
}

/// The usage record of `t1`: "count bytes".
async fn record(nats: &Nats, prefix: &str) -> Option<String> {
    let kv = async_nats::jetstream::new(connect(nats).await)
        .get_key_value(format!("{prefix}_retained_usage"))
        .await
        .expect("the usage bucket");
    let value = kv.get("t1").await.expect("a read of the record")?;
    Some(String::from_utf8(value.to_vec()).expect("a record is text"))
}

async fn topics(store: &Arc<dyn RetainedStore>) -> Vec<String> {
    let mut topics: Vec<String> = store
        .matching("#")
        .await
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    topics.sort();
    topics
}

/// Sets `message` on `store` until it is kept (at most `within`); how many
/// times it was refused first, and the refusal.
async fn set_until_kept(
    store: &Arc<dyn RetainedStore>,
    message: &Arc<Message>,
    quota: RetainedQuota,
    within: Duration,
) -> (usize, Option<Limit>) {
    let deadline = Instant::now() + within;
    let mut refused = (0, None);
    loop {
        match store.set(message, quota).await {
            Ok(_) => return refused,
            Err(limit) => refused = (refused.0 + 1, Some(limit)),
        }
        assert!(Instant::now() < deadline, "still refused: {refused:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each of `nodes` sets 15 new topics `<root>/<node>-<n>`, all queued at
/// once; how many were kept, and how many refused with `over` (the
/// answers' only other outcome).
async fn race(
    nodes: &[Arc<dyn RetainedStore>],
    root: &str,
    payload: &[u8],
    quota: RetainedQuota,
    over: Limit,
) -> (usize, usize) {
    let sets = nodes.iter().enumerate().flat_map(|(n, store)| {
        (0..15).map(move |i| {
            let message = retained(&format!("{root}/{n}-{i:02}"), payload, None);
            store.set(&message, quota)
        })
    });
    let answers: Vec<Result<Ticket, Limit>> = join_all(sets).await;
    let kept = answers.iter().filter(|a| a.is_ok()).count();
    let refused = answers.iter().filter(|a| **a == Err(over)).count();
    assert_eq!(kept + refused, answers.len(), "{answers:?}");
    (kept, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_racing_on_three_nodes_keep_exactly_the_count_then_exactly_the_bytes() {
    let nats = nats_server();
    let nodes = [
        node(&nats, "race", Timing::default()).await,
        node(&nats, "race", Timing::default()).await,
        node(&nats, "race", Timing::default()).await,
    ];
    let count_quota = RetainedQuota {
        max_messages: 7,
        max_bytes: u64::MAX,
    };
    // 3 nodes × 15 new topics, all queued at once.
    let (kept, over) = race(&nodes, "c", b"x", count_quota, Limit::RetainedMessages).await;
    assert_eq!((kept, over), (7, 38));
    assert_eq!(topics(&nodes[0]).await.len(), 7);
    let weight = retained("c/0-00", b"x", None).weight();
    assert_eq!(
        record(&nats, "race").await,
        Some(format!("7 {}", 7 * weight))
    );

    // The bytes: room for 3 more of 100 bytes past the 7 kept.
    let big = retained("d/0-00", &[0; 100], None).weight();
    let bytes_quota = RetainedQuota {
        max_messages: u32::MAX,
        max_bytes: (7 * weight + 3 * big) as u64,
    };
    let (kept, over) = race(&nodes, "d", &[0; 100], bytes_quota, Limit::RetainedBytes).await;
    assert_eq!((kept, over), (3, 42));
    assert_eq!(topics(&nodes[1]).await.len(), 10);
    assert_eq!(
        record(&nats, "race").await,
        Some(format!("10 {}", 7 * weight + 3 * big))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_left_too_high_by_a_dead_node_is_set_right_from_the_stream() {
    metrics();
    let nats = nats_server();
    let quota = RetainedQuota {
        max_messages: 3,
        max_bytes: u64::MAX,
    };
    let first = node(&nats, "drift", FAST).await;
    for topic in ["k/1", "k/2"] {
        first
            .set(&retained(topic, b"v", None), quota)
            .await
            .unwrap();
    }
    let weight = retained("k/1", b"v", None).weight();
    assert_eq!(
        record(&nats, "drift").await,
        Some(format!("2 {}", 2 * weight))
    );
    // A node reserved a third and was killed before it published.
    let kv = async_nats::jetstream::new(connect(&nats).await)
        .get_key_value("drift_retained_usage")
        .await
        .unwrap();
    kv.put("t1", format!("3 {}", 3 * weight).into())
        .await
        .unwrap();

    // A node that reads the record is refused at first (it looks full),
    // then its reconcile counts the stream's two, and the set fits.
    let later = node(&nats, "drift", FAST).await;
    let (refusals, why) = set_until_kept(
        &later,
        &retained("k/3", b"v", None),
        quota,
        Duration::from_secs(10),
    )
    .await;
    assert!(refusals > 0, "the record said full");
    assert_eq!(why, Some(Limit::RetainedMessages));
    let corrected = r#"{outcome="corrected"}"#;
    assert!(counter("aerie_retained_usage_reconciles_total", corrected) >= 1.0);
    assert_eq!(
        record(&nats, "drift").await,
        Some(format!("3 {}", 3 * weight))
    );
    assert_eq!(later.count(), 3);
    assert_eq!(
        later.set(&retained("k/4", b"v", None), quota).await,
        Err(Limit::RetainedMessages)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_retained_message_gives_its_room_back_at_a_reconcile() {
    metrics();
    let nats = nats_server();
    let quota = RetainedQuota {
        max_messages: 1,
        max_bytes: u64::MAX,
    };
    let store = node(&nats, "expiry", FAST).await;
    store
        .set(&retained("e/brief", b"soon gone", Some(1)), quota)
        .await
        .unwrap();
    let next = retained("e/next", b"v", None);
    assert_eq!(store.set(&next, quota).await, Err(Limit::RetainedMessages));
    // Expired after 1 s: no longer sent, and deleted by the next reconcile.
    let (refusals, _) = set_until_kept(&store, &next, quota, Duration::from_secs(10)).await;
    assert!(refusals > 0);
    assert_eq!(topics(&store).await, ["e/next"]);
    assert_eq!(counter("aerie_retained_expired_purged_total", ""), 1.0);
    let weight = next.weight();
    assert_eq!(record(&nats, "expiry").await, Some(format!("1 {weight}")));
}
