//! `aerie bench --cluster` as the lead runs it, shortened (one scenario,
//! `--duration 1`): the cluster column (nats-server, the control plane and
//! two gateways the bench starts itself) stands beside embedded Aerie with
//! its ratio, the messages it counts crossed from one gateway to the other,
//! and it leaves no process behind. Without nats-server the column says it
//! was skipped instead of failing the run.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aerie_e2e::nats::nats_server_path;
use aerie_e2e::server::aerie_bin;

/// Upper bound on one bench run here (debug build, shared cores).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `aerie bench` with `args` (split at spaces), `AERIE_NATS_SERVER=nats` and its temp
/// dirs under `tmp`, in a process group of its own so that a run over the
/// limit is killed with everything it started.
fn bench(args: &str, nats: &Path, tmp: &Path) -> Output {
    let mut child = Command::new(aerie_bin())
        .arg("bench")
        .args(args.split(' '))
        .env("AERIE_NATS_SERVER", nats)
        .env("TMPDIR", tmp)
        .env_remove("AERIE_LOG")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aerie bench");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > RUN_LIMIT {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let out = child.wait_with_output().expect("output");
            panic!(
                "aerie bench still running after {RUN_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "aerie bench failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The table's cells of the row whose label starts with `label`, by the
/// header's column names.
fn row(table: &str, label: &str) -> Vec<(String, String)> {
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|c| c.trim().to_owned()).collect()
    };
    let head = table
        .lines()
        .find(|l| l.starts_with("| scenario"))
        .unwrap_or_else(|| panic!("no table:\n{table}"));
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap_or_else(|| panic!("no row {label:?}:\n{table}"));
    cells(head).into_iter().zip(cells(line)).collect()
}

fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(name, _)| name == column)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no column {column:?} in {row:?}"))
}

fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// Command lines of the processes started with `TMPDIR=tmp` (the bench and
/// everything it started inherit it).
fn processes_with_tmpdir(tmp: &Path) -> Vec<String> {
    let wanted = format!("TMPDIR={}", tmp.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

#[test]
fn the_cluster_column_measures_latency_from_gateway_a_to_gateway_b() {
    let nats = nats_server_path();
    if !nats.exists() {
        eprintln!(
            "SKIPPED: nats-server not found at {} (`make test-deps` installs it)",
            nats.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let args = "--cluster --no-tenants --scenario latency --duration 1";
    let out = bench(args, &nats, tmp.path());
    let (table, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let p50 = row(&table, "latency p50");
    let embedded = number(cell(&p50, "aerie"));
    let cluster = number(cell(&p50, "aerie cluster"));
    let ratio = number(cell(&p50, "ratio (aerie cluster/aerie)¹"));
    assert!(embedded > 0.0 && cluster > 0.0 && ratio > 0.0, "{table}");
    // Every message measured crossed NATS: gateway B got it from there.
    let crossed = log
        .lines()
        .find_map(|l| l.split("gateway B received ").nth(1))
        .unwrap_or_else(|| panic!("no crossing figures:\n{log}"));
    let received = number(crossed.split([',', ' ']).next().expect("a count"));
    assert!(received >= 1000.0, "{log}");
    // No process of the cluster is left, nor its state.
    assert_eq!(processes_with_tmpdir(tmp.path()), Vec::<String>::new());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_nats_server_the_cluster_column_says_skipped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let args = "--cluster --no-tenants --scenario latency fan-in-qos1-persistent --duration 1";
    let out = bench(args, &tmp.path().join("nats-server"), tmp.path());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("note: nats-server is not installed"),
        "{table}"
    );
    let p50 = row(&table, "latency p50");
    assert!(number(cell(&p50, "aerie")) > 0.0, "{table}");
    assert_eq!(
        cell(&p50, "aerie cluster"),
        "skipped (nats-server not installed)"
    );
    // Measured wherever nats-server is (three of them, R3), skipped here.
    let persistent = row(&table, "fan-in QoS 1 → persistent session");
    assert_eq!(
        cell(&persistent, "aerie cluster"),
        "skipped (nats-server not installed)"
    );
}
