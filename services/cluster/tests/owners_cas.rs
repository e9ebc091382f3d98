//! Session ownership against a real nats-server (JetStream): two nodes
//! claiming the same client ids at the same moment, many times. The
//! compare-and-set decides each: one claim wins first and the other takes
//! the id over from it, so the bucket names the node whose claim said
//! `TookOver`, never both `Claimed`.
//!
//! And the sweep of owner keys whose node died: only those are removed, a
//! claim written since the sweep read is kept, and a node whose keys were
//! swept while it was away claims them again when it reconnects.
//!
//! The binary is `AERIE_NATS_SERVER`, else the one `make test-deps` installs.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aerie_cluster::NatsOwners;
use aerie_core::seams::{Claim, SessionOwners};
use aerie_core::{Broker, CoreConfig};
use tokio_util::sync::CancellationToken;

mod common;
use common::{connect, nats_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_one_id_at_once_end_with_one_owner_who_took_it_over() {
    let nats = nats_server();
    let client = connect(&nats).await;
    let other = connect(&nats).await;
    let a = NatsOwners::open(client.clone(), "cas", Arc::from("node-a"), 1).await;
    let b = NatsOwners::open(other, "cas", Arc::from("node-b"), 1).await;
    let kv = async_nats::jetstream::new(client)
        .get_key_value("cas_owners")
        .await
        .unwrap();

    let tenant: Arc<str> = Arc::from("t1");
    for i in 0..40 {
        let id: Arc<str> = Arc::from(format!("dev-{i}"));
        let (ra, rb) = tokio::join!(a.claim(&tenant, &id, true), b.claim(&tenant, &id, true));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let owner = kv.get(format!("t1.dev-{i}")).await.unwrap().unwrap();
        let owner = std::str::from_utf8(&owner)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        let expected = match (ra, rb) {
            (Claim::Claimed, Claim::TookOver) => "node-b",
            (Claim::TookOver, Claim::Claimed) => "node-a",
            other => panic!("dev-{i}: both claims say {other:?}"),
        };
        assert_eq!(owner, expected, "dev-{i}");
    }
}

/// The node named in `key`'s owner value, if the key has one.
async fn owner_of(kv: &async_nats::jetstream::kv::Store, key: &str) -> Option<String> {
    let value = kv.get(key).await.expect("read an owner")?;
    Some(
        std::str::from_utf8(&value)
            .expect("an owner is text")
            .split(' ')
            .next()?
            .to_owned(),
    )
}

fn nodes(names: &[&str]) -> HashSet<Arc<str>> {
    names.iter().map(|n| Arc::from(*n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_keys_of_a_dead_node_are_swept_and_a_fresh_claim_is_not() {
    let nats = nats_server();
    let client = connect(&nats).await;
    let dead = NatsOwners::open(client.clone(), "sw", Arc::from("node-a"), 1).await;
    let live = NatsOwners::open(client.clone(), "sw", Arc::from("node-b"), 1).await;
    let kv = async_nats::jetstream::new(client)
        .get_key_value("sw_owners")
        .await
        .unwrap();
    let tenant: Arc<str> = Arc::from("t1");
    assert!(
        live.sweep(&nodes(&["node-b"]), &nodes(&[])).await.unwrap() == 0,
        "empty"
    );
    for id in ["gone-1", "gone-2", "back"] {
        dead.claim(&tenant, &Arc::from(id), true).await.unwrap();
    }
    live.claim(&tenant, &Arc::from("kept"), true).await.unwrap();

    // Alive at the sweep before: spared.
    let swept = live
        .sweep(&nodes(&["node-b"]), &nodes(&["node-a", "node-b"]))
        .await
        .unwrap();
    assert_eq!(swept, 0);
    // Gone at both: its keys are stale. One client comes back on the live
    // node between the sweep's read and its deletes: that claim stays.
    let stale = live
        .stale(&nodes(&["node-b"]), &nodes(&["node-b"]))
        .await
        .unwrap();
    assert_eq!(stale.len(), 3, "{stale:?}");
    live.claim(&tenant, &Arc::from("back"), true).await.unwrap();
    assert_eq!(live.remove(stale).await, 2);

    assert_eq!(owner_of(&kv, "t1.gone-1").await, None);
    assert_eq!(owner_of(&kv, "t1.gone-2").await, None);
    assert_eq!(owner_of(&kv, "t1.back").await.as_deref(), Some("node-b"));
    assert_eq!(owner_of(&kv, "t1.kept").await.as_deref(), Some("node-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_keys_were_swept_while_it_was_away_claims_them_again_when_back() {
    let nats = nats_server();
    let client = connect(&nats).await;
    let away = NatsOwners::open(client.clone(), "back", Arc::from("node-a"), 1).await;
    let sweeper = NatsOwners::open(client.clone(), "back", Arc::from("node-b"), 1).await;
    let kv = async_nats::jetstream::new(client)
        .get_key_value("back_owners")
        .await
        .unwrap();
    // NATS reconnections of node-a's client, as `serve` counts them.
    let connects = Arc::new(AtomicU64::new(1));
    let counter = connects.clone();
    let stop = CancellationToken::new();
    away.serve(
        Broker::new(CoreConfig::default()),
        stop.clone(),
        move || counter.load(Ordering::Relaxed),
    )
    .await
    .unwrap();
    away.claim(&Arc::from("t1"), &Arc::from("dev"), true)
        .await
        .unwrap();
    let swept = sweeper
        .sweep(&nodes(&["node-b"]), &nodes(&["node-b"]))
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(owner_of(&kv, "t1.dev").await, None);

    // node-a reconnects: its key is back.
    connects.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while owner_of(&kv, "t1.dev").await.as_deref() != Some("node-a") {
        assert!(
            Instant::now() < deadline,
            "the swept key was not claimed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}
