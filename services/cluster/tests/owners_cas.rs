//! Session ownership against a real nats-server (JetStream): two nodes
//! claiming the same client ids at the same moment, many times. The
//! compare-and-set decides each: one claim wins first and the other takes
//! the id over from it, so the bucket names the node whose claim said
//! `TookOver`, never both `Claimed`.
//!
//! The binary is `AERIE_NATS_SERVER`, else the one `make test-deps` installs.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_cluster::NatsOwners;
use aerie_core::seams::{Claim, SessionOwners};

struct Nats {
    child: Child,
    _store: tempfile::TempDir,
    port: u16,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server() -> Nats {
    let bin = std::env::var_os("AERIE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/aerie-tools/nats-2.15.1/bin/nats-server")
        });
    assert!(
        bin.exists(),
        "{} is missing: run `make test-deps`",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let store = tempfile::tempdir().expect("a temp dir");
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .arg("-sd")
        .arg(store.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    Nats {
        child,
        _store: store,
        port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_one_id_at_once_end_with_one_owner_who_took_it_over() {
    let nats = nats_server();
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        match async_nats::connect(&url).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "NATS did not start: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let other = async_nats::connect(&url).await.unwrap();
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
