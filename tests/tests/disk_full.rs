//! The data dir's disk fills up under QoS 1 traffic to an offline persistent
//! session, as an operator would meet it: acknowledgements that need the
//! store wait (bounded), QoS 0 traffic keeps flowing, `/readyz` says 503,
//! and once the disk has room again acknowledgements resume by themselves;
//! after a SIGKILL every acknowledged message is delivered, and the control
//! plane's SQLite file in the same dir is intact.
//!
//! Each test mounts a small tmpfs as the data dir (the tests run as root);
//! where mounting is refused they say so and check nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aerie_e2e::raw::connect_packet;
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::*;
use aerie_testdb::tmpfs::{Tmpfs, incompressible};

/// Size of each message: random bytes, so the store cannot compress them.
const PAYLOAD: usize = 8 * 1024;

/// `m<n>` then a newline and random bytes.
fn payload(n: u32) -> bytes::Bytes {
    let mut p = format!("m{n}\n").into_bytes();
    p.extend_from_slice(&incompressible(u64::from(n), PAYLOAD));
    p.into()
}

fn name_of(payload: &[u8]) -> String {
    let end = payload.iter().position(|b| *b == b'\n').unwrap_or(0);
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

fn publish(n: u32, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "d/x".into(),
        packet_id: Some(packet_id),
        payload: payload(n),
        ..Default::default()
    })
}

fn persistent(client_id: &str) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, false);
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// `aerie serve` with its data dir on `fs`, no queue limit in the way, and
/// a parked persistent session on `d/#`.
async fn start_on(fs: &Tmpfs, store_ack_timeout: &str, extra: &[&str]) -> Server {
    let server = ServerOptions::default()
        .data_dir(fs.path().join("data"))
        .args(&["--max-queued-messages", "1000000"])
        .args(&["--store-ack-timeout", store_ack_timeout])
        .args(extra)
        .start();
    park_subscriber(&server).await;
    server
}

/// A persistent session on `d/#`, left offline: every QoS 1 message to it
/// must be stored before its PUBACK.
async fn park_subscriber(server: &Server) {
    let mut c = persistent("parked");
    c.clean_start = true;
    let (mut sub, _) = RawClient::connect_with(server.mqtt, c).await;
    sub.subscribe(1, "d/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Keeps `window` QoS 1 messages in flight and collects PUBACKs.
struct Publisher {
    client: RawClient,
    outstanding: HashMap<u16, String>,
    acked: Vec<String>,
    refused: Vec<PubResp>,
    next: u32,
}

impl Publisher {
    async fn connect(server: &Server, version: ProtocolVersion, client_id: &str) -> Publisher {
        let (client, _) = RawClient::connect(server.mqtt, version, client_id, true).await;
        Publisher {
            client,
            outstanding: HashMap::new(),
            acked: Vec::new(),
            refused: Vec::new(),
            next: 0,
        }
    }

    async fn fill_window(&mut self, window: usize) {
        while self.outstanding.len() < window {
            self.next += 1;
            let packet_id = (self.next % 60_000 + 1) as u16;
            self.outstanding
                .insert(packet_id, format!("m{}", self.next));
            assert!(
                self.client.try_send(publish(self.next, packet_id)).await,
                "the broker closed the publisher"
            );
        }
    }

    /// The next PUBACK within `wait`; false if none came.
    async fn take_ack(&mut self, wait: Duration) -> bool {
        match self.client.recv_within(wait).await {
            Ok(Some(Packet::PubAck(a))) => {
                let name = self.outstanding.remove(&a.packet_id).expect("a sent id");
                if a.reason.is_error() {
                    self.refused.push(a);
                } else {
                    self.acked.push(name);
                }
                true
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("the broker closed the publisher"),
            Err(()) => false,
        }
    }

    /// Publishes with `window` in flight until no PUBACK comes for `quiet`
    /// (the store stopped making messages durable) or a refusal arrives.
    async fn publish_until_stalled(&mut self, window: usize, quiet: Duration) {
        let started = Instant::now();
        loop {
            self.fill_window(window).await;
            if !self.take_ack(quiet).await || !self.refused.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the disk never filled up ({} acked)",
                self.acked.len()
            );
        }
    }
}

fn readyz(server: &Server) -> u16 {
    server.http_get("/readyz").0
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sqlite_integrity(path: &std::path::Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes `path` until the filesystem has no byte left.
fn fill_up(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

fn sign_up(server: &Server, email: &str) -> u16 {
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    server.api("POST", "/v1/accounts", None, Some(&body)).status
}

/// Reconnects the parked session and collects message names until quiet.
async fn drain_parked(server: &Server) -> HashSet<String> {
    let (mut sub, ack) = RawClient::connect_with(server.mqtt, persistent("parked")).await;
    assert!(ack.session_present, "the persistent session survived");
    let mut got = HashSet::new();
    while let Ok(Some(p)) = sub.recv_within(Duration::from_millis(1500)).await {
        if let Packet::Publish(p) = p {
            sub.ack(&p).await;
            got.insert(name_of(&p.payload));
        }
    }
    got
}

#[tokio::test]
async fn a_full_disk_holds_acks_until_it_grows_and_nothing_acknowledged_is_lost_in_a_sigkill() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let mut server = start_on(&fs, "120", &[]).await;
    assert_eq!(sign_up(&server, "before@example.com"), 201);
    let (mut live, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "live", true).await;
    live.subscribe(1, "live/#", QoS::AtMostOnce).await;

    let mut publisher = Publisher::connect(&server, ProtocolVersion::V5, "pub").await;
    publisher
        .publish_until_stalled(16, Duration::from_secs(3))
        .await;
    assert!(publisher.refused.is_empty(), "{:?}", publisher.refused);
    assert!(!publisher.acked.is_empty(), "acks before the disk filled");
    let held = publisher.outstanding.len();
    assert!(held > 0);

    // While the store fails: it is counted, not ready, and QoS 0 flows.
    wait_until("the store reports failing", Duration::from_secs(5), || {
        server.metric("aerie_store_failing", "") == 1.0
    });
    assert!(server.metric("aerie_store_errors_total", "") >= 1.0);
    assert_eq!(readyz(&server), 503, "/readyz while the store fails");
    let (mut quick, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "quick", true).await;
    quick
        .send(Packet::Publish(Publish {
            topic: "live/x".into(),
            payload: bytes::Bytes::from_static(b"still here"),
            ..Default::default()
        }))
        .await;
    let p = live.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"still here",
        "QoS 0 flows while the disk is full"
    );
    // The control plane's database shares the disk. Take the last free
    // bytes too, so its write cannot succeed: an error answer, no crash.
    let filler = fs.path().join("filler");
    fill_up(&filler);
    let during = sign_up(&server, "during@example.com");
    assert!(
        during >= 500,
        "a sign-up on a full disk is an error, got {during}"
    );
    std::fs::remove_file(&filler).unwrap();

    // Room again, with the PUBLISHes still in flight: their acks come by themselves.
    fs.resize("64m");
    let grown = Instant::now();
    while !publisher.outstanding.is_empty() {
        assert!(
            publisher.take_ack(Duration::from_secs(5)).await,
            "acks resume within seconds of the disk growing ({} still held)",
            publisher.outstanding.len()
        );
    }
    eprintln!(
        "{held} held acks released {} ms after the disk grew",
        grown.elapsed().as_millis()
    );
    assert!(publisher.refused.is_empty(), "{:?}", publisher.refused);
    wait_until("/readyz is 200 again", Duration::from_secs(3), || {
        readyz(&server) == 200
    });
    // And the store takes new messages as before.
    for _ in 0..20 {
        publisher.fill_window(1).await;
        assert!(publisher.take_ack(Duration::from_secs(5)).await);
    }

    server.kill9();
    let db = fs.path().join("data").join("control.db");
    assert_eq!(
        sqlite_integrity(&db),
        "ok",
        "the control plane's SQLite file"
    );
    server.restart();
    assert_eq!(sign_up(&server, "after@example.com"), 201);
    let got = drain_parked(&server).await;
    let lost: Vec<&String> = publisher
        .acked
        .iter()
        .filter(|m| !got.contains(*m))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        publisher.acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test]
async fn acks_that_wait_too_long_are_refused_to_v5_and_close_3_1_1() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let server = start_on(&fs, "1", &[]).await;

    // A v5 publisher: once the disk is full its PUBACKs come back as 0x80.
    let mut v5 = Publisher::connect(&server, ProtocolVersion::V5, "pub5").await;
    v5.publish_until_stalled(16, Duration::from_secs(3)).await;
    let refused = v5.refused.first().expect("a PUBACK refused for the store");
    assert_eq!(refused.reason, ReasonCode::UNSPECIFIED_ERROR);
    assert_eq!(
        refused.properties.reason_string.as_deref(),
        Some("store_unavailable")
    );

    // A 3.1.1 publisher cannot be told: it is closed without its PUBACK.
    let mut v3 = Publisher::connect(&server, ProtocolVersion::V311, "pub3").await;
    v3.fill_window(1).await;
    let started = Instant::now();
    match v3.client.recv_within(Duration::from_secs(5)).await {
        Ok(None) => {}
        other => panic!("expected the 3.1.1 publisher closed, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(server.metric("aerie_store_ack_timeouts_total", "version=\"3.1.1\"") >= 1.0);
    assert!(server.metric("aerie_store_ack_timeouts_total", "version=\"5\"") >= 1.0);
}

#[tokio::test]
async fn a_failing_store_stops_reading_publishers_that_need_it_and_bounds_its_backlog() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let backlog_limit = 1024 * 1024;
    let server = start_on(
        &fs,
        "120",
        &["--store-backlog-bytes", &backlog_limit.to_string()],
    )
    .await;
    let mut filler = Publisher::connect(&server, ProtocolVersion::V5, "filler").await;
    filler
        .publish_until_stalled(16, Duration::from_secs(3))
        .await;

    // A 3.1.1 client pipelines QoS 1 PUBLISHes without reading its acks:
    // the broker stops reading it instead of queueing writes without end.
    let mut flood = Publisher::connect(&server, ProtocolVersion::V311, "flood").await;
    let mut blocked = false;
    for _ in 0..4000 {
        let write = flood.fill_window(flood.outstanding.len() + 1);
        if tokio::time::timeout(Duration::from_secs(2), write)
            .await
            .is_err()
        {
            blocked = true;
            break;
        }
    }
    let sent_mib = flood.next as usize * PAYLOAD / (1024 * 1024);
    assert!(
        blocked,
        "the broker kept reading a publisher whose acks wait for a failing store ({sent_mib} MiB sent)"
    );
    let backlog = server.metric("aerie_store_backlog_bytes", "");
    assert!(
        backlog <= (backlog_limit + 2 * 1024 * 1024) as f64,
        "store backlog {backlog} bytes, limit {backlog_limit} (+ one read batch)"
    );
}
