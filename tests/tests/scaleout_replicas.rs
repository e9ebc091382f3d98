//! The buckets and streams of the scale-out shape on a 3-node NATS cluster
//! (real nats-servers with JetStream, a real `aerie control --nats` and a
//! real `aerie gateway`): each is kept on 3 servers, so losing one loses
//! nothing; one made with fewer (`--nats-replicas 1`) is raised to 3 by the
//! next process that opens it without the flag; one that cannot be raised
//! (more replicas asked for than there are servers) keeps working.

use std::time::{Duration, Instant};

use aerie_e2e::nats::{NatsCluster, NatsServer, unique_prefix};
use aerie_e2e::scaleout::{Control, Gateway};
use aerie_e2e::tenants::{mint, tenant};
use serde_json::json;

/// The replicas `stream`'s config asks for, as the servers' monitoring
/// reports it (None while no server hosts it).
fn replicas(nats: &NatsCluster, stream: &str) -> Option<u64> {
    nats.servers.iter().find_map(|server| {
        let body = aerie_e2e::http::send(
            server.monitor,
            "GET",
            "/jsz?accounts=true&streams=true&config=true",
            &[],
            "",
        )
        .body;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|account| {
                account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|detail| detail["name"] == stream)
            .and_then(|detail| detail["config"]["num_replicas"].as_u64())
    })
}

/// Waits (20 s at most) until `stream` asks for `n` replicas.
fn wait_replicas(nats: &NatsCluster, stream: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = replicas(nats, stream);
        if now == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {now:?} replicas, not {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn on_a_3_node_nats_cluster_every_bucket_and_stream_keeps_3_replicas_and_fewer_are_raised() {
    let nats = NatsCluster::start();
    let prefix = unique_prefix();
    let facts = format!("KV_{prefix}_facts");

    // An operator's --nats-replicas 1: the facts bucket has one copy.
    let mut control = Control::start(&nats.urls(), &prefix, &["--nats-replicas", "1"]);
    wait_replicas(&nats, &facts, 1);
    control.kill9();

    // Without the flag: one per server, and the facts bucket is raised.
    let _control = Control::start(&nats.urls(), &prefix, &[]);
    let mut gateway = Gateway::start(&nats.urls(), &prefix);
    gateway.wait_ready();
    for stream in [
        facts,
        format!("KV_{prefix}_nodes"),
        format!("KV_{prefix}_owners"),
        format!("KV_{prefix}_connections"),
        format!("KV_{prefix}_wills"),
        format!("{prefix}_retained"),
        format!("{prefix}_usage"),
    ] {
        wait_replicas(&nats, &stream, 3);
    }
}

#[tokio::test]
async fn buckets_that_cannot_get_the_replicas_asked_for_keep_working_with_their_own() {
    // One server: a second copy has nowhere to go.
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let control = Control::start(&nats.url(), &prefix, &[]);
    let mut first = Gateway::start(&nats.url(), &prefix);
    first.wait_ready();
    first.kill9();

    // Asked for 3 on one server: the buckets the first gateway made stay
    // at 1, and the gateway serves with them.
    let mut gateway = Gateway::start_with_flags(&nats.url(), &prefix, &["--nats-replicas", "3"]);
    gateway.wait_ready();
    let t = tenant(&control, "late@example.com");
    let (token, _) = mint(&control, &t, json!({}));
    gateway.wait_accepts(&token).await;
}
