//! `make cluster`'s script (scripts/cluster.sh) as a user runs it: it
//! starts a 3-node NATS cluster, the control plane and two gateways, prints
//! where they are, the sign-up it prints works, both gateways are one
//! cluster (a client id moves from one to the other with 0x8E), and SIGINT
//! (Ctrl-C) stops every process and removes its state.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::http::Api;
use aerie_e2e::nats::nats_server_bin;
use aerie_e2e::raw::closed_within;
use aerie_e2e::server::aerie_bin;
use aerie_e2e::tenants::{mint, tenant, with_password};
use aerie_proto::{ProtocolVersion, ReasonCode};
use serde_json::json;

/// Ports the script takes: PORT_BASE..PORT_BASE+15.
const PORTS: u16 = 16;

/// A base whose 16 ports are all free now.
fn free_port_base() -> u16 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    for attempt in 0..200u32 {
        // Below Linux's ephemeral range (32768-), where other tests' ports
        // and outgoing connections come from.
        let base = 10_000 + (seed.wrapping_add(attempt * 7919) % 22_000) as u16;
        let held: Vec<_> = (0..PORTS)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(PORTS) {
            return base;
        }
    }
    panic!("no 16 consecutive free ports");
}

/// The script's process; SIGTERM if the test ends before it stopped. A
/// failed test shows the processes' logs first.
struct Script(Child, Option<String>);

impl Drop for Script {
    fn drop(&mut self) {
        if let Some(dir) = self.1.as_ref().filter(|_| std::thread::panicking()) {
            for name in ["gateway-a", "gateway-b", "control", "nats-0"] {
                let log = std::fs::read_to_string(format!("{dir}/{name}.log")).unwrap_or_default();
                eprintln!("---- {name}.log\n{log}");
            }
        }
        if self.0.try_wait().ok().flatten().is_none() {
            signal(&self.0, "TERM");
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

struct ControlAt(SocketAddr);

impl Api for ControlAt {
    fn http_addr(&self) -> SocketAddr {
        self.0
    }
}

fn addr(base: u16, offset: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], base + offset))
}

#[tokio::test]
async fn the_cluster_script_starts_nats_control_and_two_gateways_that_work_and_ctrl_c_stops_them_all()
 {
    let base = free_port_base();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .env("AERIE_BIN", aerie_bin())
        .env("NATS_SERVER", nats_server_bin())
        .env("PORT_BASE", base.to_string())
        // A test that fails leaves nothing running for long.
        .env("CLUSTER_LIFETIME", "180")
        .env("AERIE_LOG", "info,aerie_cluster=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run scripts/cluster.sh");
    let stdout = child.stdout.take().unwrap();
    let mut script = Script(child, None);

    // Its report, up to "ready": where the state is, and the endpoints.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.starts_with("Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("the script did not say it was ready ({e}): {printed:#?}"),
        }
    }
    let text = printed.join("\n");
    eprintln!("{text}");
    let (control, gw_a, gw_b) = (addr(base, 9), addr(base, 10), addr(base, 13));
    for endpoint in [
        format!("http://{control}"),
        format!("mqtt://{gw_a}"),
        format!("mqtt://{gw_b}"),
        format!("nats://{}", addr(base, 0)),
    ] {
        assert!(text.contains(&endpoint), "{endpoint} not in:\n{text}");
    }
    assert!(text.contains("/v1/accounts"), "no sign-up in:\n{text}");
    let state_dir = text
        .split("state and logs in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the state dir")
        .to_owned();
    assert!(Path::new(&state_dir).is_dir());
    script.1 = Some(state_dir.clone());

    // Sign-up as printed, then a device on each gateway with one client id.
    let t = tenant(&ControlAt(control), "maker@example.com");
    let (token, _) = mint(&ControlAt(control), &t, json!({}));
    let connect = |gateway| {
        let token = token.clone();
        async move {
            let (c, ack) = RawClient::connect_with(
                gateway,
                with_password(ProtocolVersion::V5, "sensor-1", Some(&token)),
            )
            .await;
            (c, ack.reason)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = loop {
        let (c, reason) = connect(gw_a).await;
        if reason == ReasonCode::SUCCESS {
            break c;
        }
        assert!(Instant::now() < deadline, "gateway A refuses: {reason:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let _second = loop {
        let (c, reason) = connect(gw_b).await;
        if reason == ReasonCode::SUCCESS {
            break c;
        }
        assert!(Instant::now() < deadline, "gateway B refuses: {reason:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (d, _) = closed_within(&mut first, Duration::from_secs(3)).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::SESSION_TAKEN_OVER));

    // Ctrl-C: everything stops, and the state goes.
    signal(&script.0, "INT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the script is still running after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    for i in [0, 1, 2, 9, 10, 13] {
        assert!(
            TcpStream::connect(addr(base, i)).is_err(),
            "port +{i} still answers after Ctrl-C"
        );
    }
    assert!(
        !Path::new(&state_dir).exists(),
        "{state_dir} is left behind"
    );
}
