//! The cluster column (`--cluster`): the scale-out shape on loopback, as
//! `make cluster` starts it but with one NATS server: nats-server with
//! JetStream, `aerie control --nats` on SQLite and two `aerie gateway`s (this
//! executable). Every publisher connects to gateway A and every subscriber
//! to gateway B, so each message a scenario counts crossed NATS once (B fans
//! it out to its own subscribers). Tenants are provisioned as in the JWT
//! column: one tenant, its limits lifted, one token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::brokers::{BENCH_ADMIN_TOKEN, Process, Running, free_port, http_get, metrics_of};
use crate::report::metric;

/// The nats-server version `make test-deps` installs.
const NATS_VERSION: &str = "2.15.1";

/// What each process of the cluster may take to become ready (NATS elects
/// itself JetStream leader, the gateways open their buckets).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Receive Maximum the gateways announce (the embedded default, given
/// explicitly): a CONNACK carries the smaller of it and the tenant's
/// in-flight limit (the free plan's is 32), which is how the bench sees the
/// lifted limits have reached a gateway.
const RECEIVE_MAXIMUM: u16 = 1024;

/// The nats-server binary: `AERIE_NATS_SERVER`, else the one `make
/// test-deps` installs under `~/.cache/aerie-tools` (as the e2e harness and
/// `make cluster` find it); None if it is not there.
pub fn nats_server_path() -> Option<PathBuf> {
    let path = match std::env::var_os("AERIE_NATS_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(format!(
            ".cache/aerie-tools/nats-{NATS_VERSION}/bin/nats-server"
        )),
    };
    path.is_file().then_some(path)
}

/// Why the cluster column has no value for a scenario, if it has none.
pub fn skipped(scenario: crate::Scenario) -> Option<String> {
    use crate::Scenario::*;
    match scenario {
        Idle10k | Idle50k => Some("measured embedded only".into()),
        FanInQos0 | FanInQos1 | FanInQos1Persistent | FanOut | Latency | Soak => nats_server_path()
            .is_none()
            .then(|| "nats-server not installed".into()),
    }
}

/// The HTTP listeners (/metrics) of the cluster's two gateways, and NATS's.
#[derive(Debug, Clone, Copy)]
pub struct Gateways {
    /// The publishers' gateway.
    pub a: SocketAddr,
    /// The subscribers' gateway.
    pub b: SocketAddr,
    /// nats-server's monitoring port.
    pub nats_monitor: SocketAddr,
}

/// How many NATS servers the cluster runs: three (every stream and bucket
/// R3, as in production) where the scenario is about durability, else one.
pub fn nats_servers(persistence: bool) -> usize {
    if persistence { 3 } else { 1 }
}

/// Starts `servers` nats-servers with JetStream (routed into one cluster
/// when more than one); their processes, the client URL list for the
/// gateways, and the first one's monitoring address.
async fn start_nats(
    root: &std::path::Path,
    servers: usize,
) -> anyhow::Result<(Vec<Process>, String, SocketAddr)> {
    const NAMES: [&str; 3] = ["nats-server-1", "nats-server-2", "nats-server-3"];
    let nats_bin = nats_server_path().context("nats-server is not installed")?;
    let ports: Vec<(u16, SocketAddr, u16)> = (0..servers.min(NAMES.len()))
        .map(|_| Ok((free_port()?, loopback()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let routes = ports
        .iter()
        .map(|(_, _, route)| format!("nats://127.0.0.1:{route}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut processes = Vec::new();
    for (i, (port, monitor, route)) in ports.iter().enumerate() {
        let mut cmd = Command::new(&nats_bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.port().to_string()])
            .args(["-n", NAMES[i]])
            .arg("-sd")
            .arg(root.join(NAMES[i]));
        if ports.len() > 1 {
            cmd.args(["--cluster_name", "aerie-bench"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &routes]);
        }
        processes.push(Process::spawn(NAMES[i], cmd, root)?);
    }
    // A cluster is ready once JetStream is current on every server (its
    // meta leader elected, the routes up): a gateway connected before that
    // counts fewer servers and makes its streams with fewer copies.
    let healthz = if ports.len() > 1 {
        "/healthz"
    } else {
        "/healthz?js-enabled-only=true"
    };
    for (process, (_, monitor, _)) in processes.iter_mut().zip(&ports) {
        wait_ok(process, &format!("http://{monitor}{healthz}")).await?;
    }
    let urls = ports
        .iter()
        .map(|(port, _, _)| format!("nats://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok((processes, urls, ports[0].1))
}

/// Starts the cluster in `dir` on `servers` NATS servers
/// ([`nats_servers`]), provisions the tenant, and returns once both
/// gateways accept its token with the lifted limits. What it started is
/// killed if any step fails.
pub async fn start(dir: tempfile::TempDir, servers: usize) -> anyhow::Result<Running> {
    let root = dir.path().to_owned();
    let (nats, nats_url, monitor) = start_nats(&root, servers).await?;

    let control_http = loopback()?;
    let mut cmd = aerie("control")?;
    cmd.args(["--http", &control_http.to_string(), "--nats", &nats_url])
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}?mode=rwc",
            root.join("control.db").display()
        ))
        .arg("--secret-key-file")
        .arg(secret_key_file(&root)?)
        .env("AERIE_ADMIN_TOKEN", BENCH_ADMIN_TOKEN);
    let mut control = Process::spawn("control", cmd, &root)?;
    wait_ok(&mut control, &format!("http://{control_http}/readyz")).await?;

    let (mut a, a_mqtt, a_http) = gateway("gateway-a", &nats_url, &root)?;
    let (mut b, b_mqtt, b_http) = gateway("gateway-b", &nats_url, &root)?;
    wait_ok(&mut a, &format!("http://{a_http}/readyz")).await?;
    wait_ok(&mut b, &format!("http://{b_http}/readyz")).await?;

    // Gateway A first: the measured process (memory, descriptors).
    let mut processes = vec![a, b, control];
    processes.extend(nats);
    let mut running = Running::new(a_mqtt, b_mqtt, Some(a_http), processes, dir);
    running.gateways = Some(Gateways {
        a: a_http,
        b: b_http,
        nats_monitor: monitor,
    });
    let provisioned = crate::tenancy::provision(control_http, BENCH_ADMIN_TOKEN, 1).await?;
    let token = provisioned.tokens.first().context("no token")?;
    for gateway in [a_mqtt, b_mqtt] {
        wait_lifted(&mut running, gateway, token).await?;
    }
    running.tokens = provisioned.tokens;
    running.expiring_token = Some(provisioned.expiring);
    Ok(running)
}

/// What crossed from gateway A to gateway B, as a progress line: B's count
/// when the load stopped and once it stopped growing (what was still on its
/// way then reached no subscriber: a lag B could not keep up with); fails
/// if nothing crossed (the scenario then measured something else).
pub async fn crossed(gateways: Gateways) -> anyhow::Result<String> {
    let read = |text: &str, name| metric(text, name).unwrap_or(0.0);
    let mut b = metrics_of(gateways.b).await?;
    let at_end = read(&b, "aerie_backbone_received_total");
    // Where a lag sits: before NATS (A's client) or after it (B).
    let nats_at_end = varz_count(gateways.nats_monitor, "in_msgs").await;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = metrics_of(gateways.b).await?;
        let settled = read(&now, "aerie_backbone_received_total")
            == read(&b, "aerie_backbone_received_total");
        b = now;
        if settled {
            break;
        }
    }
    let a = metrics_of(gateways.a).await?;
    let sent = read(&a, "aerie_backbone_published_total");
    let dropped = read(&a, "aerie_backbone_dropped_total");
    let delivered_on_a = read(&a, "aerie_messages_delivered_total");
    let received = read(&b, "aerie_backbone_received_total");
    let delivered_on_b = read(&b, "aerie_messages_delivered_total");
    if received == 0.0 {
        bail!("gateway B received nothing from NATS: no message crossed the gateways");
    }
    if delivered_on_a > 0.0 {
        bail!(
            "gateway A delivered {delivered_on_a} messages: a subscriber is on the publishers' gateway"
        );
    }
    let slow = varz_count(gateways.nats_monitor, "slow_consumers").await;
    let copies = stream_copies(gateways.nats_monitor).await;
    Ok(format!(
        "gateway A sent {sent:.0} to NATS ({dropped:.0} dropped); by the end of the load NATS had taken in {nats_at_end} messages (all subjects) and gateway B received {at_end:.0}, {received:.0} once settled, and delivered {delivered_on_b:.0}; NATS slow consumers: {slow}; JetStream streams by copies: {copies}"
    ))
}

/// How many copies JetStream keeps of each stream (`/jsz`), as
/// `copies×streams` pairs: what the durability figures stand on.
async fn stream_copies(monitor: SocketAddr) -> String {
    let jsz = async {
        let url = format!("http://{monitor}/jsz?accounts=true&streams=true");
        let jsz: serde_json::Value = http_get(&url).await?.json().await?;
        let mut by_copies = std::collections::BTreeMap::<u64, usize>::new();
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                // The leader's copy and its replicas'.
                let replicas = stream["cluster"]["replicas"].as_array().map_or(0, Vec::len);
                let copies = 1 + replicas as u64;
                *by_copies.entry(copies).or_default() += 1;
            }
        }
        anyhow::Ok(
            by_copies
                .iter()
                .map(|(copies, n)| format!("R{copies}×{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    jsz.await.unwrap_or_else(|e| format!("? ({e:#})"))
}

/// A count from nats-server's `/varz` (`in_msgs`, `slow_consumers`: the
/// clients it dropped messages for because they did not read fast
/// enough), or `?` and why not.
async fn varz_count(monitor: SocketAddr, field: &str) -> String {
    let varz = async {
        let url = format!("http://{monitor}/varz");
        let varz: serde_json::Value = http_get(&url).await?.json().await?;
        varz[field].as_u64().context("not in /varz")
    };
    match varz.await {
        Ok(n) => n.to_string(),
        Err(e) => format!("? ({e:#})"),
    }
}

/// `aerie <subcommand>` of this executable, with none of the caller's
/// `AERIE_*` settings but the log filter: the flags say everything.
fn aerie(subcommand: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("AERIE_") && k != "AERIE_LOG")
        {
            cmd.env_remove(key);
        }
    }
    cmd.arg(subcommand);
    Ok(cmd)
}

/// `aerie gateway` on free loopback ports: the process, its MQTT and HTTP
/// addresses.
fn gateway(
    name: &'static str,
    nats_url: &str,
    root: &Path,
) -> anyhow::Result<(Process, SocketAddr, SocketAddr)> {
    let (mqtt, ws, http) = (loopback()?, loopback()?, loopback()?);
    let mut cmd = aerie("gateway")?;
    cmd.args(["--node-id", name, "--nats", nats_url])
        .args(["--mqtt", &mqtt.to_string(), "--ws", &ws.to_string()])
        .args(["--http", &http.to_string()])
        .args(["--receive-maximum", &RECEIVE_MAXIMUM.to_string()]);
    Ok((Process::spawn(name, cmd, root)?, mqtt, http))
}

/// A fresh 32-byte key-encryption key for the control plane, in a file
/// (hex) only the bench's temp dir holds.
fn secret_key_file(root: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let path = root.join("secret.key");
    std::fs::write(&path, hex)?;
    Ok(path)
}

fn loopback() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// Waits until `url` answers 200 while `process` runs.
async fn wait_ok(process: &mut Process, url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let what = format!("{url} did not answer 200");
    let every = Duration::from_millis(100);
    wait_until(
        &what,
        every,
        || process.check_alive(),
        async || match client.get(url).send().await.map(|r| r.status()) {
            Ok(status) if status.is_success() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await
}

/// Waits until the gateway at `mqtt` accepts `token` with the tenant's
/// lifted limits: the facts travel from the control plane through NATS,
/// and a scenario measured under the free plan's rates would measure them.
async fn wait_lifted(running: &mut Running, mqtt: SocketAddr, token: &str) -> anyhow::Result<()> {
    let what = format!("gateway {mqtt} did not accept the tenant's token with its lifted limits");
    // The free plan allows 10 CONNECTs a second.
    let every = Duration::from_millis(200);
    wait_until(
        &what,
        every,
        || running.check_alive(),
        async || {
            // A gateway may close a refused CONNECT without a CONNACK: not yet.
            let probe = crate::clients::connack_v5(mqtt, "bench-probe", token);
            let ack = tokio::time::timeout(Duration::from_secs(5), probe)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no CONNACK within 5 s")))
                .map_err(|e| format!("{e:#}"))?;
            let maximum = ack.properties.receive_maximum;
            if ack.reason == aerie_proto::ReasonCode::SUCCESS && maximum == Some(RECEIVE_MAXIMUM) {
                return Ok(());
            }
            Err(format!("{:?}, Receive Maximum {maximum:?}", ack.reason))
        },
    )
    .await
}

/// Polls `ready` every `every` while `alive` holds, for at most
/// [`READY_WITHIN`]; `ready`'s error says what it saw last.
async fn wait_until(
    what: &str,
    every: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
    mut ready: impl AsyncFnMut() -> Result<(), String>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        alive()?;
        let seen = match ready().await {
            Ok(()) => return Ok(()),
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            bail!("{what} within {} s (last: {seen})", READY_WITHIN.as_secs());
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    #[test]
    fn the_memory_rows_say_why_the_cluster_skips_them_and_persistence_runs_on_three_servers() {
        for idle in [Scenario::Idle10k, Scenario::Idle50k] {
            assert_eq!(skipped(idle).as_deref(), Some("measured embedded only"));
        }
        assert_eq!(
            skipped(Scenario::FanInQos1Persistent),
            skipped(Scenario::FanInQos1),
            "measured wherever nats-server is"
        );
        assert_eq!((nats_servers(true), nats_servers(false)), (3, 1));
    }
}
