//! The store on a filesystem that fills up and then grows again: commits
//! fail, the durable ticket stops, and once there is room everything that
//! was submitted becomes durable by itself, with nothing lost.
//!
//! Mounts a small tmpfs (the tests run as root); where mounting is refused
//! the test says so and passes without checking anything.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use aerie_core::message::Message;
use aerie_core::store::{Store, StoreOp};
use aerie_proto::QoS;
use aerie_store::FjallStore;
use aerie_testdb::tmpfs::{Tmpfs, incompressible};

fn retained(i: u64) -> StoreOp {
    StoreOp::PutRetained {
        tenant: "t".into(),
        message: Message::published(
            format!("r/{i}").as_str().into(),
            incompressible(i, 16 * 1024).into(),
            QoS::AtLeastOnce,
            true,
            Default::default(),
            Default::default(),
            Default::default(),
        ),
    }
}

fn stored_topics(dir: &Path) -> Vec<String> {
    // The dropped store's writer thread lets go of the directory lock soon.
    let mut tries = 0;
    let store = loop {
        match FjallStore::open(dir) {
            Ok(store) => break store,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("reopen: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the store does not reopen: {e}"),
        }
    };
    let mut topics: Vec<String> = store
        .load()
        .expect("the store loads")
        .retained
        .iter()
        .map(|(_, m)| m.topic.to_string())
        .collect();
    topics.sort();
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledgements_and_room_brings_them_back_with_nothing_lost() {
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let dir = fs.path().join("store");
    let store = FjallStore::open(&dir).expect("the store opens");
    let _ = store.load().expect("an empty store loads");
    let mut durable = store.durable();

    // Fill the disk: writes go in until commits fail.
    let mut submitted = 0u64;
    let mut last_ticket = 0;
    while !store.is_failing() {
        assert!(submitted < 2_000, "2 MiB never filled up");
        submitted += 1;
        last_ticket = store.submit(retained(submitted));
        if submitted.is_multiple_of(8) {
            // Let commits run, so the failure shows.
            let _ = tokio::time::timeout(Duration::from_millis(200), durable.changed()).await;
        }
    }
    // More writes while it fails: they wait too.
    for _ in 0..20 {
        submitted += 1;
        last_ticket = store.submit(retained(submitted));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stuck_at = *durable.borrow();
    assert!(
        stuck_at < last_ticket,
        "nothing past the failure is durable"
    );
    assert!(store.is_failing());

    // Room again: every write becomes durable by itself, within seconds.
    fs.resize("64m");
    tokio::time::timeout(
        Duration::from_secs(5),
        durable.wait_for(|t| *t >= last_ticket),
    )
    .await
    .expect("acknowledgements resume within 5 s of the disk having room")
    .expect("the writer runs");
    assert!(!store.is_failing());
    drop(durable);
    drop(store);

    let want: Vec<String> = {
        let mut w: Vec<String> = (1..=submitted).map(|i| format!("r/{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(
        stored_topics(&dir),
        want,
        "every submitted write is on disk"
    );
}
