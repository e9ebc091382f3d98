//! A real Prometheus (Debian's `prometheus`, installed by `make test-deps`)
//! scraping the processes of a test every second, in a temp dir of its own
//! on a free loopback port; killed when dropped. Tests ask it through its
//! HTTP API, as Grafana and Alertmanager do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::free_addr;

/// `name` (`prometheus`, `promtool`) on PATH, or a panic that says how to get it.
pub fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH: run `make test-deps` (it installs Debian's prometheus \
             package, which brings {name})"
        )
    })
}

/// A running Prometheus.
pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each job's targets (`/metrics`) every
    /// second and evaluating `rule_files`; returns once it answers.
    pub fn start(jobs: &[(&str, Vec<SocketAddr>)], rule_files: &[PathBuf]) -> Prometheus {
        let mut dir = tempfile::tempdir().expect("temp dir");
        let config = config(jobs, rule_files);
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the config");
        for _ in 0..5 {
            let addr = free_addr();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
            let child = Command::new(tool("prometheus"))
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let mut prometheus = Prometheus { addr, child, dir };
            if prometheus.wait_ready() {
                return prometheus;
            }
            eprintln!(
                "prometheus exited during start-up; retrying on another port:\n{}",
                prometheus.log()
            );
            dir = prometheus.into_dir();
        }
        panic!("prometheus did not start after 5 attempts");
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Whether it answers `/-/ready` (false: it exited).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = crate::http::try_send(self.addr, "GET", "/-/ready", &[], "")
                .is_ok_and(|r| r.status == 200);
            if ready {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; the `data` of a `success` answer, or the error.
    fn api(&self, path: &str) -> Result<Value, String> {
        let reply = crate::http::send(self.addr, "GET", path, &[], "");
        let body: Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("HTTP {}: {e}: {}", reply.status, reply.body))?;
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or(&reply.body)
            )),
        }
    }

    /// An instant query: its result (a vector's samples, or a scalar's
    /// value as one sample), or Prometheus's error.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                data["result"].as_array().cloned().unwrap_or_default()
            }
            _ => vec![data["result"].clone()],
        })
    }

    /// Every rule it loaded: (name, query, type).
    pub fn rules(&self) -> Vec<(String, String, String)> {
        let data = self.api("/api/v1/rules").expect("the rules");
        let mut rules = vec![];
        for group in data["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                rules.push((
                    rule["name"].as_str().expect("a name").to_owned(),
                    rule["query"].as_str().expect("a query").to_owned(),
                    rule["type"].as_str().expect("a type").to_owned(),
                ));
            }
        }
        rules
    }

    /// Waits (at most `within`) until `expr` returns data; returns it.
    pub fn wait_for(&self, expr: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            match self.query(expr) {
                Ok(result) if !result.is_empty() => return result,
                Ok(_) => {}
                Err(e) => panic!("{expr}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no data for {expr} within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// prometheus.yml: one-second scrapes and rule evaluations.
fn config(jobs: &[(&str, Vec<SocketAddr>)], rule_files: &[PathBuf]) -> String {
    let mut c = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    c.push_str("rule_files:\n");
    for f in rule_files {
        c.push_str(&format!("  - '{}'\n", f.display()));
    }
    c.push_str("scrape_configs:\n");
    for (job, targets) in jobs {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        c.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ));
    }
    c
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The repository's infra/ directory.
pub fn infra_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra"))
}
