//! Boots `aerie serve` as a child process.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `aerie serve`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    pub mqtt: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub mqtts: SocketAddr,
    pub wss: SocketAddr,
    pub data_dir: PathBuf,
    options: ServerOptions,
    _tmp: Option<tempfile::TempDir>,
}

/// How to start the broker, for tests that need more than [`Server::start`]:
/// `ServerOptions::default().anonymous(false).start()`.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    allow_anonymous: bool,
    via_env: bool,
    tls: Option<(PathBuf, PathBuf)>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            allow_anonymous: true,
            via_env: false,
            tls: None,
            extra_args: vec![],
            env: vec![],
            data_dir: None,
        }
    }
}

impl ServerOptions {
    /// `--allow-anonymous` (on by default).
    pub fn anonymous(mut self, allow: bool) -> Self {
        self.allow_anonymous = allow;
        self
    }

    /// The data dir (default: a fresh temp dir), e.g. on a filesystem the
    /// test controls.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Pass the listener addresses, data dir and anonymous switch as `AERIE_*`
    /// variables instead of flags.
    pub fn via_env(mut self) -> Self {
        self.via_env = true;
        self
    }

    /// `--tls-cert`/`--tls-key`: also starts the MQTTS and WSS listeners
    /// (see `tls::TestCert`).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// More flags, appended last.
    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra_args.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// `AERIE_ALLOW_PRIVATE_DESTINATIONS`: tenants' JWKS URLs may be on
    /// loopback, where tests serve them (refused by default).
    pub fn allow_private_destinations(self) -> Self {
        self.env("AERIE_ALLOW_PRIVATE_DESTINATIONS", "true")
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn start(self) -> Server {
        Server::start_with(self)
    }
}

/// The binary under test: `AERIE_BIN`, or `target/debug/aerie` beside the test executable.
pub fn aerie_bin() -> PathBuf {
    if let Ok(p) = std::env::var("AERIE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/aerie
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("aerie");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p aerie` first (make test does)",
        bin.display()
    );
    bin
}

/// A loopback port that was free a moment ago.
/// The built console of this checkout.
const CONSOLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist");

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Server {
    /// Starts the broker with anonymous access and the given extra flags.
    pub fn start(extra: &[&str]) -> Server {
        ServerOptions::default().args(extra).start()
    }

    /// Starts the broker as `options` say.
    pub fn start_with(options: ServerOptions) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut s = Server {
            child: None,
            mqtt: free_addr(),
            ws: free_addr(),
            http: free_addr(),
            mqtts: free_addr(),
            wss: free_addr(),
            data_dir: options
                .data_dir
                .clone()
                .unwrap_or_else(|| tmp.path().join("data")),
            options,
            _tmp: Some(tmp),
        };
        // A port that was free a moment ago may have been taken by another
        // test's server meanwhile: then start again on fresh ports.
        for _ in 0..5 {
            match s.try_spawn() {
                Ok(()) => return s,
                Err(status) => {
                    eprintln!("aerie exited during start-up ({status}); retrying on other ports");
                    (s.mqtt, s.ws, s.http, s.mqtts, s.wss) = (
                        free_addr(),
                        free_addr(),
                        free_addr(),
                        free_addr(),
                        free_addr(),
                    );
                }
            }
        }
        panic!("aerie did not start after 5 attempts");
    }

    fn spawn(&mut self) {
        if let Err(status) = self.try_spawn() {
            panic!("aerie exited during start-up: {status}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), std::process::ExitStatus> {
        let o = &self.options;
        let mut cmd = Command::new(aerie_bin());
        cmd.arg("serve");
        let listeners = [
            ("--mqtt", "AERIE_MQTT", self.mqtt),
            ("--ws", "AERIE_WS", self.ws),
            ("--http", "AERIE_HTTP", self.http),
            ("--mqtts", "AERIE_MQTTS", self.mqtts),
            ("--wss", "AERIE_WSS", self.wss),
        ];
        for (flag, var, addr) in listeners {
            if o.via_env {
                cmd.env(var, addr.to_string());
            } else {
                cmd.args([flag, &addr.to_string()]);
            }
        }
        if o.via_env {
            cmd.env("AERIE_DATA_DIR", &self.data_dir);
            if o.allow_anonymous {
                cmd.env("AERIE_ALLOW_ANONYMOUS", "true");
            }
        } else {
            cmd.arg("--data-dir").arg(&self.data_dir);
            if o.allow_anonymous {
                cmd.arg("--allow-anonymous");
            }
        }
        if !o.allow_anonymous {
            cmd.env_remove("AERIE_ALLOW_ANONYMOUS");
        }
        // Only a test that asks for it (the test's own setting, below, wins).
        cmd.env_remove("AERIE_ALLOW_PRIVATE_DESTINATIONS");
        if let Some((cert, key)) = &o.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        cmd.args(&o.extra_args)
            .env(
                "AERIE_LOG",
                std::env::var("AERIE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // The repository's console (`make web`), not `web/dist` under
            // the test's working directory; a test's own setting wins.
            .env("AERIE_CONSOLE_DIR", CONSOLE_DIR)
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn aerie"));
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(self.http).is_ok()
                && std::net::TcpStream::connect(self.mqtt).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "aerie did not start listening within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("wait")
    }

    /// Starts again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM, wait for the clean exit, start again on the same ports and
    /// data dir.
    pub fn restart_gracefully(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "aerie exited with {status} on SIGTERM");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A REST call on the HTTP listener (see [`crate::http::request`]).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> crate::http::Reply {
        crate::http::request(self.http, method, path, bearer, body)
    }

    /// GET a path on the HTTP listener; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let r = self.http_request("GET", path, &[], "");
        (r.status, r.body)
    }

    /// One HTTP/1.1 request on the HTTP listener, with extra header lines
    /// (`("x-request-id", "abc")`) and a JSON body if not empty.
    pub fn http_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        json: &str,
    ) -> HttpResponse {
        crate::http::send(self.http, method, path, headers, json)
    }

    /// The value of a Prometheus sample (summed over label sets matching `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        sum_metric(&body, name, labels)
    }
}

impl Server {
    /// Polls [`Server::metric`] until it equals `want` (metrics are recorded
    /// asynchronously) or [`crate::WAIT`] passes; returns the last value.
    pub fn wait_metric(&self, name: &str, labels: &str, want: f64) -> f64 {
        let deadline = Instant::now() + crate::WAIT;
        loop {
            let v = self.metric(name, labels);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The sum of the samples of `name` in a Prometheus text `body` whose label
/// sets contain `labels`.
pub fn sum_metric(body: &str, name: &str, labels: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let key = l.split_whitespace().next().unwrap_or("");
            (key == name || key.starts_with(&format!("{name}{{"))) && key.contains(labels)
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// What [`Server::http_request`] got back; header names in lower case.
pub type HttpResponse = crate::http::Reply;
