//! The scale-out shape's processes: `aerie control --nats` (SQLite, an admin
//! token) and `aerie gateway --nats`, each on free loopback ports, killed
//! when dropped. Both take the bucket prefix of their test, so tests that
//! share one nats-server see nothing of each other.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::http::{Api, Reply};
use crate::server::{aerie_bin, free_addr};

/// The admin token `Control` starts with (`/v1/admin`).
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdefghij";

/// `aerie` with none of the caller's `AERIE_*` variables.
fn aerie(subcommand: &str) -> Command {
    let mut cmd = Command::new(aerie_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("AERIE_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg(subcommand)
        .env(
            "AERIE_LOG",
            std::env::var("AERIE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    cmd
}

/// A child process, killed when dropped.
struct Process(Option<Child>);

impl Process {
    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How the process exited, if it did.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Panics if the process exited.
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.exited() {
            panic!("{what} exited: {status}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `aerie control --nats` on a SQLite file in a temp dir.
pub struct Control {
    pub http: SocketAddr,
    /// Its SQLite database (`sqlite://…`), for the CLI on the database.
    pub database_url: String,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Control {
    /// Starts it with `nats_url` and bucket prefix `prefix`, plus `extra`
    /// flags; returns once `/readyz` answers 200.
    pub fn start(nats_url: &str, prefix: &str, extra: &[&str]) -> Control {
        Control::start_with_env(nats_url, prefix, extra, &[])
    }

    /// As [`Control::start`], with `env` set (OTLP export, say).
    pub fn start_with_env(
        nats_url: &str,
        prefix: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Control {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.db").display()
        );
        // A port that was free a moment ago may have been taken by another
        // test meanwhile (it then exits at once, and what answers there is
        // someone else): it starts again on a fresh port, as gateways do.
        for _ in 0..5 {
            let http = free_addr();
            let child = aerie("control")
                .args(["--http", &http.to_string(), "--database-url", &db])
                .args(["--nats", nats_url, "--nats-prefix", prefix])
                .args(extra)
                .env("AERIE_SECRET_KEY", "ab".repeat(32))
                .env("AERIE_ADMIN_TOKEN", ADMIN_TOKEN)
                .envs(env.iter().copied())
                .spawn()
                .expect("spawn aerie control");
            let mut process = Process(Some(child));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = process.exited() {
                    eprintln!(
                        "aerie control exited during start-up ({status}); retrying on another port"
                    );
                    break;
                }
                let ready = crate::http::try_send(http, "GET", "/readyz", &[], "")
                    .is_ok_and(|r| r.status == 200);
                if ready {
                    return Control {
                        http,
                        database_url: db,
                        process,
                        _dir: dir,
                    };
                }
                assert!(Instant::now() < deadline, "aerie control did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("aerie control did not start after 5 attempts");
    }

    /// SIGKILL: nothing more is published.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Sets some of `tenant`'s limits (the others keep theirs), through the
    /// admin API.
    pub fn set_limits(&self, tenant: &crate::tenants::Tenant, limits: serde_json::Value) {
        self.admin(
            "PATCH",
            &format!("/v1/admin/tenants/{}/limits", tenant.id),
            Some(&limits),
        )
        .expect(200);
    }

    /// An admin route (`/v1/admin/...`) with the admin token.
    pub fn admin(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Reply {
        self.api(method, path, Some(ADMIN_TOKEN), body)
    }

    /// The value of a Prometheus sample on `/metrics` (summed over the
    /// label sets that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        crate::server::sum_metric(&self.get("/metrics").body, name, labels)
    }

    fn get(&self, path: &str) -> Reply {
        crate::http::send(self.http, "GET", path, &[], "")
    }
}

impl Api for Control {
    fn http_addr(&self) -> SocketAddr {
        self.http
    }
}

/// `aerie gateway --nats`.
pub struct Gateway {
    pub mqtt: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    process: Process,
}

impl Gateway {
    /// Starts it and returns once its HTTP listener answers (it may not be
    /// ready: see [`Gateway::wait_ready`]).
    pub fn start(nats_url: &str, prefix: &str) -> Gateway {
        Gateway::start_with(nats_url, prefix, |_| {})
    }

    /// As [`Gateway::start`], its log (INFO and up) written to `log`.
    pub fn start_logging(nats_url: &str, prefix: &str, log: &std::path::Path) -> Gateway {
        let file = std::fs::File::create(log).expect("a log file");
        Gateway::start_with(nats_url, prefix, |cmd| {
            cmd.env("AERIE_LOG", "info")
                .stderr(file.try_clone().expect("the log file"));
        })
    }

    /// As [`Gateway::start`], with `env` set (OTLP export, say).
    pub fn start_with_env(nats_url: &str, prefix: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with(nats_url, prefix, |cmd| {
            cmd.envs(env.iter().copied());
        })
    }

    /// As [`Gateway::start`], with `flags` on its command line.
    pub fn start_with_flags(nats_url: &str, prefix: &str, flags: &[&str]) -> Gateway {
        Gateway::start_with(nats_url, prefix, |cmd| {
            cmd.args(flags);
        })
    }

    /// As [`Gateway::start`], with `adjust` applied to its command. A port
    /// that was free a moment ago may have been taken by another test
    /// meanwhile (the gateway then exits at once): it starts again on fresh
    /// ports, as the embedded harness's `Server::start_with` does.
    fn start_with(nats_url: &str, prefix: &str, adjust: impl Fn(&mut Command)) -> Gateway {
        for _ in 0..5 {
            let (mqtt, ws, http) = (free_addr(), free_addr(), free_addr());
            let mut cmd = aerie("gateway");
            cmd.args(["--mqtt", &mqtt.to_string(), "--ws", &ws.to_string()])
                .args(["--http", &http.to_string()])
                .args(["--nats", nats_url, "--nats-prefix", prefix]);
            adjust(&mut cmd);
            let child = cmd.spawn().expect("spawn aerie gateway");
            let mut gateway = Gateway {
                mqtt,
                ws,
                http,
                process: Process(Some(child)),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(http).is_ok() {
                    return gateway;
                }
                if let Some(status) = gateway.process.exited() {
                    eprintln!(
                        "aerie gateway exited during start-up ({status}); retrying on other ports"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "aerie gateway did not listen on HTTP"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("aerie gateway did not start after 5 attempts");
    }

    /// A raw v5 client's clean CONNECT with `token` as its password; the
    /// client and the CONNACK's reason.
    pub async fn connect_v5(
        &self,
        client_id: &str,
        token: &str,
    ) -> (crate::RawClient, aerie_proto::ReasonCode) {
        let (c, ack) = crate::RawClient::connect_with(
            self.mqtt,
            crate::tenants::with_password(aerie_proto::ProtocolVersion::V5, client_id, Some(token)),
        )
        .await;
        (c, ack.reason)
    }

    /// Waits (10 s at most) until `token` connects: the facts it needs
    /// travel to the gateway through NATS.
    pub async fn wait_accepts(&self, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (client, reason) = self.connect_v5("probe", token).await;
            if reason == aerie_proto::ReasonCode::SUCCESS {
                client.disconnect().await;
                return;
            }
            assert!(Instant::now() < deadline, "token refused: {reason:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: its connections drop and it says nothing to anyone.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, and waits (15 s at most) for it to exit: a clean stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.process.0.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("aerie gateway did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`false`) or SIGCONT (`true`): a gateway that hangs with its
    /// connections (to NATS too) open. Dropping it kills it even while stopped.
    /// Once continued, it answers `/healthz` again within 5 s, or this says
    /// whether it is gone or still hung.
    pub fn set_running(&mut self, running: bool) {
        let pid = self.process.0.as_ref().expect("running").id();
        let signal = if running { "-CONT" } else { "-STOP" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
        if !running {
            // Stopped once every thread is: kill returns when the signal is
            // sent, and a thread busy on the other core answers a request
            // meanwhile.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !all_threads_stopped(pid) {
                assert!(
                    Instant::now() < deadline,
                    "aerie gateway {pid} not stopped 5 s after SIGSTOP"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.process.exited() {
                panic!("aerie gateway {pid} exited after SIGCONT: {status}");
            }
            let answered = crate::http::try_send(self.http, "GET", "/healthz", &[], "");
            if answered.is_ok_and(|r| r.status == 200) {
                return;
            }
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "aerie gateway {pid} does not answer /healthz 5 s after SIGCONT (/proc stat: {state})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a Prometheus sample on its `/metrics` (summed over the
    /// label sets that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let body = crate::http::send(self.http, "GET", "/metrics", &[], "").body;
        crate::server::sum_metric(&body, name, labels)
    }

    /// The status of `GET /readyz`.
    pub fn readyz(&self) -> u16 {
        crate::http::send(self.http, "GET", "/readyz", &[], "").status
    }

    /// Waits until `/readyz` answers `status` (at most `within`); returns
    /// how long that took.
    pub fn wait_readyz(&mut self, status: u16, within: Duration) -> Duration {
        let since = Instant::now();
        loop {
            let now = self.readyz();
            if now == status {
                return since.elapsed();
            }
            self.process.assert_running("aerie gateway");
            assert!(
                since.elapsed() < within,
                "/readyz still {now} after {within:?}, not {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until ready (NATS connected, facts held) and MQTT listening.
    pub fn wait_ready(&mut self) {
        self.wait_readyz(200, Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(self.mqtt).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway is ready but not on MQTT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A control plane and two ready gateways on the shared nats-server, apart
/// from other tests by their bucket prefix.
pub struct Cluster {
    pub control: Control,
    pub a: Gateway,
    pub b: Gateway,
    pub prefix: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with_flags(&[])
    }

    /// [`Cluster::start`] with `flags` for both gateways.
    pub fn start_with_flags(flags: &[&str]) -> Cluster {
        let nats = crate::nats::NatsServer::shared();
        let prefix = crate::nats::unique_prefix();
        let control = Control::start(&nats.url(), &prefix, &[]);
        let mut a = Gateway::start_with_flags(&nats.url(), &prefix, flags);
        let mut b = Gateway::start_with_flags(&nats.url(), &prefix, flags);
        a.wait_ready();
        b.wait_ready();
        Cluster {
            control,
            a,
            b,
            prefix,
        }
    }

    /// Waits until both gateways accept `token`.
    pub async fn wait_accepted(&self, token: &str) {
        for gateway in [&self.a, &self.b] {
            gateway.wait_accepts(token).await;
        }
    }

    /// Sets some of `tenant`'s limits and waits until both gateways
    /// enforce them (see [`set_limits_enforced`]).
    pub async fn set_limits(&self, tenant: &crate::tenants::Tenant, limits: serde_json::Value) {
        let nats = crate::nats::NatsServer::shared();
        set_limits_enforced(
            nats,
            &self.control,
            &self.prefix,
            tenant,
            limits,
            &[&self.a, &self.b],
        )
        .await;
    }

    /// A tenant with its limits lifted past the free plan's (the scenarios
    /// need more than 20 msg/s per client), `limits` on top, and a token
    /// both gateways accept.
    pub async fn lifted_tenant(
        &self,
        email: &str,
        limits: serde_json::Value,
    ) -> (crate::tenants::Tenant, String) {
        let t = crate::tenants::tenant(&self.control, email);
        let mut lifted = serde_json::json!({
            "connections": 5000, "connect_rate": 100000,
            "publish_rate_msgs": 100000, "client_publish_rate_msgs": 100000,
        });
        for (k, v) in limits.as_object().expect("an object") {
            lifted[k] = v.clone();
        }
        self.set_limits(&t, lifted).await;
        let (token, _) = crate::tenants::mint(&self.control, &t, serde_json::json!({}));
        self.wait_accepted(&token).await;
        (t, token)
    }
}

/// Sets some of `tenant`'s limits through `control` (bucket prefix
/// `prefix`) and waits (10 s at most) until each of `gateways` enforces
/// them: the facts bucket holds them (read through `nats`), and the
/// gateway's `aerie_facts_revision` has reached that entry. (A token that a
/// gateway accepts says only that it knows the tenant, maybe with the
/// limits it was created with.)
pub async fn set_limits_enforced(
    nats: &crate::nats::NatsServer,
    control: &Control,
    prefix: &str,
    tenant: &crate::tenants::Tenant,
    limits: serde_json::Value,
    gateways: &[&Gateway],
) {
    control.set_limits(tenant, limits.clone());
    let bucket = format!("{prefix}_facts");
    let ask = serde_json::json!({ "last_by_subj": format!("$KV.{bucket}.tenant.{}", tenant.id) });
    let deadline = Instant::now() + Duration::from_secs(10);
    let revision = loop {
        let reply: serde_json::Value = serde_json::from_slice(&nats.request(
            &format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"),
            ask.to_string().as_bytes(),
        ))
        .expect("JSON");
        let record: Option<serde_json::Value> = reply["message"]["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|d| serde_json::from_slice(&d).ok());
        let holds = record.as_ref().is_some_and(|r| {
            let wanted = limits.as_object().expect("an object");
            wanted.iter().all(|(k, v)| r["limits"][k] == *v)
        });
        if holds {
            break reply["message"]["seq"].as_u64().expect("seq");
        }
        assert!(
            Instant::now() < deadline,
            "the facts bucket never held {limits} for {}: {reply}",
            tenant.id
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for gateway in gateways {
        while gateway.metric("aerie_facts_revision", "") < revision as f64 {
            assert!(
                Instant::now() < deadline,
                "a gateway never reached facts revision {revision}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in its
/// `/proc/<pid>/task/<tid>/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "<tid> (<comm>) <state> …": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "T" || state == "t")
    })
}
