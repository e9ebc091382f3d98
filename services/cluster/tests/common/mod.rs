//! A real nats-server (JetStream) for the tests of this crate, killed when
//! dropped. The binary is `AERIE_NATS_SERVER`, else the one `make
//! test-deps` installs.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
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

pub fn nats_server() -> Nats {
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

/// A client of `nats`, once it accepts connections.
pub async fn connect(nats: &Nats) -> async_nats::Client {
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match async_nats::connect(&url).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "NATS did not start: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
