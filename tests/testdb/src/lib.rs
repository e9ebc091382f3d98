//! Test support for the control-plane and end-to-end tests: real databases, never mocks.
//!
//! - [`sqlite_url`]: a SQLite file in a fresh temp dir.
//! - [`tmpfs::Tmpfs`]: a small filesystem to fill up and grow (disk-full tests).
//! - [`postgres_url`]: a fresh database in a throwaway Postgres 15 cluster that
//!   is started once per test binary. If Postgres cannot be started the test
//!   fails: CI installs it (`.ci/run`).

pub mod tmpfs;

/// For tests that look into tokens beyond [`verify_jwt`].
pub use jsonwebtoken;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::Connection;

/// A SQLite database in a new temp dir; keep the dir alive as long as the store.
pub fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("control.db").display()
    );
    (dir, url)
}

/// A new, empty database in the shared cluster (one per test keeps tests apart).
pub async fn postgres_url() -> String {
    let cluster = tokio::task::spawn_blocking(PgCluster::shared)
        .await
        .expect("cluster start");
    let name = format!("t_{}", rand::rng().random::<u64>());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The server may still be starting: retry until the deadline.
        match create_database(&cluster.admin_url(), &name).await {
            Ok(()) => return cluster.url(&name),
            Err(e) if Instant::now() < deadline => {
                cluster.assert_running();
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "Postgres at {} did not accept CREATE DATABASE: {e}\n{}",
                cluster.admin_url(),
                cluster.log()
            ),
        }
    }
}

async fn create_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    // `name` is `t_` and digits, made here: no injection possible.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// A Postgres cluster in a temp dir, run as the `postgres` user when we are
/// root (Postgres refuses to run as root).
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

impl PgCluster {
    /// The cluster of this test binary, started on first use.
    ///
    /// A static is never dropped, so the cluster is stopped by a small shell
    /// watchdog that runs next to it: when this process is gone it stops
    /// Postgres (`pg_ctl stop -m immediate`) and removes the temp dir.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(|| PgCluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    fn start() -> Result<PgCluster, String> {
        let as_root = run_capture(Command::new("id").arg("-u"))?.trim() == "0";
        let dir = tempfile::Builder::new()
            .prefix("aerie-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        std::fs::create_dir(dir.join("sock")).map_err(|e| format!("sock dir: {e}"))?;
        if as_root {
            run_capture(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))?;
        }
        let port = free_port();
        let cluster = PgCluster { dir, port, as_root };
        let data = cluster.dir.join("data");
        run_capture(
            cluster
                .command(&pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        )
        .map_err(|e| format!("initdb failed (is Postgres 15 installed?): {e}"))?;
        // $1 postgres, $2 pg_ctl, $3 cluster dir, $4 port, $5 pid of this test binary.
        let script = r#"
            "$1" -D "$3/data" -p "$4" -k "$3/sock" -c listen_addresses=127.0.0.1 \
                -c fsync=off -c max_connections=200 >"$3/postgres.log" 2>&1 &
            pg=$!
            while [ -d "/proc/$5" ] && kill -0 "$pg" 2>/dev/null; do sleep 0.3; done
            "$2" -D "$3/data" stop -m immediate >/dev/null 2>&1
            wait "$pg"
            [ -d "/proc/$5" ] || rm -rf "$3"
        "#;
        cluster
            .command("sh")
            .args(["-c", script, "pg-watchdog"])
            .arg(pg_bin("postgres"))
            .arg(pg_bin("pg_ctl"))
            .arg(&cluster.dir)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        Ok(cluster)
    }

    /// `program` as the `postgres` user if we are root.
    fn command(&self, program: &str) -> Command {
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        }
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Fails the test at once if the server has died (e.g. port taken).
    fn assert_running(&self) {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let log = self.log();
        if !pid_file.exists() && log.contains("FATAL") {
            panic!("Postgres did not start:\n{log}");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate"])
            .output();
    }
}

/// A Postgres program: from the Debian versioned dir if there, else from PATH.
fn pg_bin(name: &str) -> String {
    let debian = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if debian.exists() {
        debian.display().to_string()
    } else {
        name.to_owned()
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn run_capture(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Verifies `token` against `jwks` with `jsonwebtoken`, an independent JWT
/// library: EdDSA only, `aud: mqtt`, `iss: issuer`, `exp` checked; the key is
/// picked by the header's `kid`. Returns the claims.
pub fn verify_jwt(
    token: &str,
    jwks: &serde_json::Value,
    issuer: &str,
) -> Result<serde_json::Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let header = decode_header(token).map_err(|e| format!("header: {e}"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(format!("alg {:?}", header.alg));
    }
    if header.typ.as_deref() != Some("JWT") {
        return Err(format!("typ {:?}", header.typ));
    }
    let kid = header.kid.ok_or("no kid")?;
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("jwks: {e}"))?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwk: {e}"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["mqtt"]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let data = decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|e| format!("verify: {e}"))?;
    Ok(data.claims)
}
