//! Starting, watching and stopping the brokers under test.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A broker the bench can measure.
#[derive(Debug, Clone)]
pub enum Kind {
    /// This executable's `serve`, so the bench measures the build it ships with.
    Aerie,
    /// The same with JWT authentication on and this many tenants.
    AerieTenants(usize),
    /// The scale-out shape (NATS, control plane, two gateways): publishers
    /// on one gateway, subscribers on the other (`crate::cluster`).
    AerieCluster,
    Mosquitto,
    /// Already running (`--broker-only`): never started or stopped by us.
    External(SocketAddr),
}

impl Kind {
    pub fn name(&self) -> String {
        match self {
            Kind::Aerie => "aerie".to_owned(),
            Kind::AerieTenants(n) => format!("aerie JWT, {n} tenants"),
            Kind::AerieCluster => "aerie cluster".to_owned(),
            Kind::Mosquitto => "mosquitto".to_owned(),
            Kind::External(addr) => addr.to_string(),
        }
    }
}

pub fn mosquitto_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    // Debian puts it in sbin, which a non-root PATH may lack.
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

/// How long tokio keeps an idle blocking thread (its default 10 s), and a
/// second more.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(11);

/// A process we started, with its log; killed on drop (SIGKILL: nothing here
/// needs a graceful shutdown, and it is bounded), so an error or a panic
/// anywhere leaves none behind.
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd`, its stdout and stderr to `<dir>/<name>.log`.
    pub(crate) fn spawn(
        name: &'static str,
        mut cmd: Command,
        dir: &Path,
    ) -> anyhow::Result<Process> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Process { name, child, log })
    }

    /// Fails (with the end of its log) if the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker we started (its processes killed on drop), or an external address.
pub struct Running {
    /// Where publishers connect.
    pub pub_addr: SocketAddr,
    /// Where subscribers connect: `pub_addr`, but for the cluster column,
    /// whose subscribers are on another gateway than its publishers.
    pub sub_addr: SocketAddr,
    /// Aerie's HTTP listener (/metrics, the REST API); None for others.
    pub http: Option<SocketAddr>,
    /// The cluster column's two gateways (their /metrics).
    pub gateways: Option<crate::cluster::Gateways>,
    /// One token per tenant (JWT column); empty: anonymous clients.
    pub(crate) tokens: Vec<String>,
    /// A token of the first tenant that expires a minute after start-up
    /// (JWT column): the soak's "expired token".
    pub expiring_token: Option<String>,
    /// Mosquitto's persistence_location, when persistence is on.
    db: Option<PathBuf>,
    /// The other tenants' clients, subscribed to the scenarios' topics.
    _bystanders: Vec<crate::clients::Client>,
    /// The broker's processes, the measured one (memory, descriptors) first;
    /// the CPU figures sum them all. Before `_dir`: killed before their
    /// state is removed.
    processes: Vec<Process>,
    _dir: tempfile::TempDir,
    /// When start-up (and provisioning) ended: see [`Running::settled_rss_kib`].
    quiet_since: Instant,
}

impl Running {
    /// A broker of `processes` (none: an external one), clients anonymous
    /// until tokens are set.
    pub(crate) fn new(
        pub_addr: SocketAddr,
        sub_addr: SocketAddr,
        http: Option<SocketAddr>,
        processes: Vec<Process>,
        dir: tempfile::TempDir,
    ) -> Running {
        Running {
            pub_addr,
            sub_addr,
            http,
            gateways: None,
            tokens: Vec::new(),
            expiring_token: None,
            db: None,
            _bystanders: Vec::new(),
            processes,
            _dir: dir,
            quiet_since: Instant::now(),
        }
    }

    /// The password of the `n`th client: a token of tenant `n % tenants`
    /// (`None`: anonymous).
    pub fn password(&self, n: usize) -> Option<String> {
        (!self.tokens.is_empty()).then(|| self.tokens[n % self.tokens.len()].clone())
    }

    /// A measured publisher: anonymous, or with a token of the first tenant.
    pub async fn publisher(&self, client_id: &str) -> anyhow::Result<crate::clients::Client> {
        let password = self.password(0);
        crate::clients::connect(self.pub_addr, client_id, None, password.as_deref()).await
    }

    /// A measured subscriber, like [`Running::publisher`] but at `sub_addr`.
    pub async fn subscriber(&self, client_id: &str) -> anyhow::Result<crate::clients::Client> {
        let password = self.password(0);
        crate::clients::connect(self.sub_addr, client_id, None, password.as_deref()).await
    }

    /// Aerie's /metrics text (None for other brokers).
    pub async fn metrics(&self) -> anyhow::Result<Option<String>> {
        match self.http {
            Some(http) => Ok(Some(metrics_of(http).await?)),
            None => Ok(None),
        }
    }

    /// Bytes Mosquitto has saved in its persistence_location (None: no
    /// persistence, or not Mosquitto).
    pub fn saved_bytes(&self) -> Option<u64> {
        let entries = std::fs::read_dir(self.db.as_ref()?).ok()?;
        Some(
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum(),
        )
    }

    /// The measured process (the cluster: gateway A).
    pub fn pid(&self) -> Option<u32> {
        self.processes.first().map(|p| p.child.id())
    }

    /// Resident memory in KiB (VmRSS), for the memory-per-connection scenarios.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        proc_field(&status, "VmRSS:")
    }

    /// The broker's RSS once it stopped growing by itself (two readings
    /// 250 ms apart within 256 KiB; at most 10 s): a broker grows for a
    /// moment after it starts listening (its allocator's arenas, the
    /// store's buffers), and a baseline read before that would count that
    /// growth against the connections measured next.
    pub async fn settled_rss_kib(&self) -> Option<u64> {
        // tokio keeps an idle blocking thread for 10 s, and with it its
        // allocator heap: Aerie's start-up work (opening the store) and the
        // provisioning's password hashing leave about 14 MB that go away
        // 10 s later. A baseline read before that counts them, and the row
        // then charges the connections 1.4 KiB (at 10,000) too little.
        tokio::time::sleep_until((self.quiet_since + BLOCKING_KEEP_ALIVE).into()).await;
        let mut last = self.rss_kib()?;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.rss_kib()?;
            if now.abs_diff(last) < 256 {
                return Some(now);
            }
            last = now;
        }
        Some(last)
    }

    /// The broker's soft limit on open files: it caps the idle scenarios.
    pub fn nofile_limit(&self) -> Option<u64> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()?)).ok()?;
        proc_field(&limits, "Max open files")
    }

    /// CPU time (user + system) the broker's processes have used so far.
    pub fn cpu(&self) -> Option<Duration> {
        let mut total: Option<Duration> = None;
        for p in &self.processes {
            *total.get_or_insert_default() += cpu_of(&p.child.id().to_string())?;
        }
        total
    }

    /// Fails (with the end of its log) if a process of the broker has
    /// exited: a crash must not be reported as a slow result.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.processes.iter_mut().try_for_each(Process::check_alive)
    }
}

/// The /metrics text of the Aerie process whose HTTP listener is `http`.
pub(crate) async fn metrics_of(http: SocketAddr) -> anyhow::Result<String> {
    Ok(http_get(&format!("http://{http}/metrics"))
        .await?
        .text()
        .await?)
}

/// A GET answered with a success status (10 s at most).
pub(crate) async fn http_get(url: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(url)
        .send()
        .await?
        .error_for_status()?)
}

/// CPU time (user + system) of a process, "self" for the bench itself: to
/// show the generator is not the bottleneck.
pub fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux we run on.
    Some(Duration::from_millis(ticks * 10))
}

/// Parses the number after `key` in a /proc text file.
pub(crate) fn proc_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A loopback port free right now (the broker binds it a moment later).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Opens the admin API of the Aerie we start (the tenancy column lifts its
/// tenants' limits with it); never used outside the bench's own process.
pub(crate) const BENCH_ADMIN_TOKEN: &str = "aerie-bench-admin-token-0123456789abcdef";

/// Starts `kind`; `persistence` turns Mosquitto's on (Aerie always stores
/// persistent sessions in its data dir).
pub async fn start(kind: &Kind, persistence: bool) -> anyhow::Result<Running> {
    let dir = tempfile::Builder::new().prefix("aerie-bench-").tempdir()?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut saved_in = None;
    let (name, cmd) = match kind {
        Kind::External(addr) => return Ok(Running::new(*addr, *addr, None, Vec::new(), dir)),
        Kind::AerieCluster => {
            return crate::cluster::start(dir, crate::cluster::nats_servers(persistence)).await;
        }
        Kind::Aerie | Kind::AerieTenants(_) => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("serve");
            if matches!(kind, Kind::Aerie) {
                cmd.arg("--allow-anonymous");
            }
            cmd.arg("--mqtt").arg(addr.to_string());
            cmd.arg("--ws").arg(format!("127.0.0.1:{}", free_port()?));
            cmd.arg("--http").arg(http.to_string());
            cmd.arg("--data-dir").arg(dir.path().join("data"));
            cmd.env("AERIE_ADMIN_TOKEN", BENCH_ADMIN_TOKEN);
            ("aerie", cmd)
        }
        Kind::Mosquitto => {
            let bin = mosquitto_path().context("mosquitto is not installed")?;
            let conf = dir.path().join("mosquitto.conf");
            let db = persistence.then(|| dir.path().join("db"));
            if let Some(db) = &db {
                // Started as root, Mosquitto drops to user `mosquitto`, and
                // then cannot save into a root-only temp dir: it logs
                // "Permission denied" and runs without persistence.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
                std::fs::create_dir(db)?;
                std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o777))?;
            }
            std::fs::write(&conf, mosquitto_config(port, db.as_deref()))?;
            saved_in = db;
            // Raise the soft open-files limit to the hard one, as `aerie serve`
            // does for itself; exec keeps the pid, so VmRSS is mosquitto's.
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(r#"ulimit -n "$(ulimit -Hn)"; exec "$0" -c "$1""#)
                .arg(bin)
                .arg(conf);
            ("mosquitto", cmd)
        }
    };
    let process = Process::spawn(name, cmd, dir.path())?;
    let is_aerie = matches!(kind, Kind::Aerie | Kind::AerieTenants(_));
    let mut running = Running::new(addr, addr, is_aerie.then_some(http), vec![process], dir);
    running.db = saved_in;
    wait_ready(&mut running).await?;
    if let Kind::AerieTenants(n) = kind {
        let provisioned = crate::tenancy::provision(http, BENCH_ADMIN_TOKEN, *n).await?;
        running.tokens = provisioned.tokens;
        running.expiring_token = Some(provisioned.expiring);
        for (i, token) in running.tokens.iter().enumerate().skip(1) {
            let mut c = crate::clients::connect(addr, "bench-bystander", None, Some(token))
                .await
                .with_context(|| format!("bystander of tenant {i}"))?;
            c.subscribe("bench/#", aerie_proto::QoS::AtMostOnce).await?;
            running._bystanders.push(c);
        }
    }
    running.quiet_since = Instant::now();
    Ok(running)
}

/// Like Aerie's defaults for the bench: anonymous, and no queue/in-flight
/// caps small enough to throttle the throughput scenarios. Persistence off,
/// or (`db`) on as close to Aerie's as Mosquitto goes: Aerie fsyncs a QoS 1
/// delivery to a persistent session before the PUBACK; Mosquitto never
/// writes per message, it saves its whole in-memory db to a new file (fsync,
/// rename). With `autosave_on_changes` and `autosave_interval 1` it saves
/// after every change to queued/retained messages or subscriptions (in the
/// main loop, after the PUBACK is queued) instead of every 30 min: the
/// nearest it has to "every delivery on disk".
fn mosquitto_config(port: u16, db: Option<&Path>) -> String {
    let persistence = match db {
        Some(dir) => format!(
            "persistence true\n\
             persistence_location {}/\n\
             autosave_on_changes true\n\
             autosave_interval 1\n",
            dir.display()
        ),
        None => "persistence false\n".to_owned(),
    };
    format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         {persistence}\
         max_queued_messages 1000000\n\
         max_inflight_messages 0\n\
         max_connections -1\n\
         connection_messages false\n\
         log_type error\n\
         log_type warning\n\
         log_dest stderr\n"
    )
}

async fn wait_ready(broker: &mut Running) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        broker.check_alive()?;
        if tokio::net::TcpStream::connect(broker.pub_addr)
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = broker.processes.first().map(|p| log_tail(&p.log));
            bail!(
                "broker did not listen on {} within 10 s; log tail:\n{}",
                broker.pub_addr,
                log.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let status = "Name:\taerie\nVmRSS:\t   12345 kB\n";
        assert_eq!(proc_field(status, "VmRSS:"), Some(12345));
        let limits = "Max open files            20000                20000                files\n";
        assert_eq!(proc_field(limits, "Max open files"), Some(20000));
    }
}
