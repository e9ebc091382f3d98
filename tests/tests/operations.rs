//! What an operator installs on day one (issue 13), checked against a real
//! Prometheus rather than by eye: the Grafana dashboards of infra/grafana/
//! and the alert rules of infra/prometheus/rules/.
//!
//! A real `prometheus` scrapes a real `aerie serve` (and, for the scale-out
//! dashboard, `aerie control` and two `aerie gateway`s on a nats-server)
//! every second under a little traffic; every expression of every panel and
//! every alert rule (read from the files, as Grafana and Prometheus read
//! them) goes through Prometheus's `/api/v1/query`: none may error, and each
//! must return data.
//!
//! Alerts are about faults. The test triggers those it can: a scrape target
//! that is down (AerieDown), a certificate that expires in 7 days
//! (AerieCertificateExpiresSoon), a burst of refused authentications
//! (AerieAuthFailureSpike), of connections (AerieConnectionStorm), of
//! messages dropped at a full offline queue (AerieMessagesDropped), of
//! SUBSCRIBEs over a tenant's limit (AerieTenantAtLimit), a store's disk
//! filled up with a 1 s ack timeout (AerieStoreErrors, AerieAcksHeldTooLong;
//! a tmpfs, mounted as root only) and a killed NATS server
//! (AerieNatsDisconnected), a gateway that never gets the control plane's
//! facts (AerieFactsStale: started with another `--nats-prefix`, the same
//! symptom as a stuck watch): their expressions must return the firing
//! series. A slow disk (AerieStoreCommitsSlow) is not staged: its
//! expression must evaluate, and the series it reads must have data (see
//! [`ALERTS`]). Each alert
//! fires and stays silent as it should in the promtool unit tests
//! (infra/prometheus/tests/), which [`promtool_checks_and_passes_the_alert_rules_unit_tests`]
//! runs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::prometheus::{Prometheus, infra_dir, tool};
use aerie_e2e::scaleout::{Control, Gateway, set_limits_enforced};
use aerie_e2e::server::free_addr;
use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::tls::TestCert;
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use aerie_testdb::tmpfs::Tmpfs;
use serde_json::{Value, json};

const ADMIN: &str = "e2e-admin-token-0123456789abcdefghij";
const V5: ProtocolVersion = ProtocolVersion::V5;
/// What Grafana's `$__rate_interval` and `$__range` become here: the whole
/// test fits in them.
const RATE_INTERVAL: &str = "1m";
const RANGE: &str = "5m";

/// Which set-up an alert is about, and what the test expects of it.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Embedded,
    ScaleOut,
}

#[derive(Clone, Copy)]
enum Expect {
    /// The test stages the fault: the expression returns the firing series.
    Fires,
    /// As `Fires` where the test may mount a tmpfs (as root) to fill a
    /// store's disk; elsewhere as `Reads` of this series.
    FiresOnAFullDisk(&'static str),
    /// A fault the test does not stage: the expression evaluates, and this
    /// series it reads has data.
    Reads(&'static str),
}

/// Every alert of infra/prometheus/rules/: a rule missing here fails the test.
const ALERTS: &[(&str, Shape, Expect)] = &[
    ("AerieDown", Shape::Embedded, Expect::Fires),
    (
        "AerieStoreErrors",
        Shape::Embedded,
        Expect::FiresOnAFullDisk("aerie_store_errors_total"),
    ),
    (
        "AerieStoreCommitsSlow",
        Shape::Embedded,
        Expect::Reads(
            "histogram_quantile(0.99, sum by (le) (rate(aerie_store_commit_seconds_bucket[5m])))",
        ),
    ),
    (
        "AerieAcksHeldTooLong",
        Shape::Embedded,
        Expect::FiresOnAFullDisk("aerie_store_ack_timeouts_total"),
    ),
    ("AerieMessagesDropped", Shape::Embedded, Expect::Fires),
    ("AerieAuthFailureSpike", Shape::Embedded, Expect::Fires),
    ("AerieTenantAtLimit", Shape::Embedded, Expect::Fires),
    ("AerieConnectionStorm", Shape::Embedded, Expect::Fires),
    ("AerieNatsDisconnected", Shape::ScaleOut, Expect::Fires),
    ("AerieFactsStale", Shape::ScaleOut, Expect::Fires),
    (
        "AerieCertificateExpiresSoon",
        Shape::Embedded,
        Expect::Fires,
    ),
];

fn rules_file() -> PathBuf {
    infra_dir().join("prometheus/rules/aerie.yml")
}

/// The dashboards of infra/grafana/, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = infra_dir().join("grafana");
    let mut all: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("infra/grafana")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn dashboard(file: &str) -> Value {
    dashboards()
        .into_iter()
        .find(|(name, _)| name == file)
        .unwrap_or_else(|| panic!("infra/grafana/{file} is missing"))
        .1
}

/// (panel title, expression) of every target of every panel.
fn panel_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push((
                panel["title"].as_str().expect("a title").to_owned(),
                target["expr"].as_str().expect("an expr").to_owned(),
            ));
        }
    }
    out
}

/// An expression as Grafana sends it, its variables substituted.
fn substitute(expr: &str, tenant: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$job", "aerie")
        .replace("$tenant", tenant)
}

/// Evaluates every panel expression of `file`; returns what failed.
fn check_panels(prometheus: &Prometheus, file: &str, tenant: &str) -> Vec<String> {
    let mut failures = vec![];
    let exprs = panel_exprs(&dashboard(file));
    assert!(!exprs.is_empty(), "{file} has no panel expression");
    for (title, expr) in exprs {
        let expr = substitute(&expr, tenant);
        match prometheus.query(&expr) {
            // NaN: a quantile of buckets that did not move, a ratio of
            // zeros: Grafana draws nothing either.
            Ok(result) if result.iter().all(|r| r["value"][1] == "NaN") => {
                failures.push(format!("{file} / {title}: no data for {expr}"))
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{file} / {title}: {expr}: {e}")),
        }
    }
    failures
}

/// Evaluates every alert rule of `shape` as [`ALERTS`] says; returns what
/// failed. Fails at once on a rule the table does not know.
fn check_alerts(prometheus: &Prometheus, shape: Shape, full_disk: bool) -> Vec<String> {
    let rules = prometheus.rules();
    let names: HashSet<&str> = rules.iter().map(|(n, _, _)| n.as_str()).collect();
    let known: HashSet<&str> = ALERTS.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(names, known, "the loaded rules and ALERTS differ");
    let mut failures = vec![];
    for (name, query, kind) in &rules {
        assert_eq!(kind, "alerting", "{name}");
        let (_, rule_shape, expect) = ALERTS.iter().find(|(n, _, _)| n == name).unwrap();
        if *rule_shape != shape {
            continue;
        }
        let expect = match expect {
            Expect::FiresOnAFullDisk(_) if full_disk => Expect::Fires,
            Expect::FiresOnAFullDisk(series) => Expect::Reads(series),
            other => *other,
        };
        let result = prometheus.query(query);
        match (expect, result) {
            (_, Err(e)) => failures.push(format!("{name}: {query}: {e}")),
            (Expect::Fires, Ok(r)) if r.is_empty() => {
                failures.push(format!("{name} does not fire on its fault: {query}"))
            }
            (Expect::Fires | Expect::FiresOnAFullDisk(_), Ok(_)) => {}
            (Expect::Reads(series), Ok(_)) => match prometheus.query(series) {
                Ok(r) if r.is_empty() => failures.push(format!("{name}: no data for {series}")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{name}: {series}: {e}")),
            },
        }
    }
    failures
}

/// Every `# TYPE` of a /metrics body has a `# HELP`; counters, and only
/// they, end in `_total`; every sample belongs to a typed family.
fn check_metrics_text(what: &str, body: &str) -> Vec<String> {
    let mut failures = vec![];
    let mut helped = HashSet::new();
    let mut typed = vec![];
    for line in body.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name), Some(_)) => {
                helped.insert(name.to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name), Some(kind)) => {
                typed.push((name.to_owned(), kind.to_owned()))
            }
            _ => {}
        }
    }
    assert!(typed.len() >= 3, "{what}: too few metrics:\n{body}");
    for (name, kind) in &typed {
        if !helped.contains(name) {
            failures.push(format!("{what}: {name} has no HELP"));
        }
        if (kind == "counter") != name.ends_with("_total") {
            failures.push(format!(
                "{what}: {name} is a {kind}: counters, and only they, end in _total"
            ));
        }
    }
    let families: HashSet<&str> = typed.iter().map(|(n, _)| n.as_str()).collect();
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
            .unwrap_or(name);
        if !families.contains(family) {
            failures.push(format!("{what}: {name} has no TYPE"));
        }
    }
    failures
}

fn assert_none(what: &str, failures: Vec<String>) {
    assert!(failures.is_empty(), "{what}:\n  {}", failures.join("\n  "));
}

#[test]
fn the_dashboards_are_grafana_dashboards_with_job_and_described_panels() {
    let all = dashboards();
    let files: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        [
            "aerie-overview.json",
            "aerie-scaleout.json",
            "aerie-tenant.json"
        ]
    );
    let mut uids = HashSet::new();
    for (file, d) in &all {
        // What Grafana's dashboard schema requires of an import.
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        let uid = d["uid"].as_str().expect("a uid");
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid}");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} taken twice");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: title"
        );
        assert!(
            d.get("id").is_none_or(Value::is_null),
            "{file}: an import carries no id"
        );
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let var = |name: &str| vars.iter().find(|v| v["name"] == name);
        let job = var("job").unwrap_or_else(|| panic!("{file}: no job variable"));
        assert_eq!(
            job["current"]["value"], "aerie",
            "{file}: job defaults to aerie"
        );
        assert!(
            var("datasource").is_some(),
            "{file}: no datasource variable"
        );
        if file == "aerie-tenant.json" {
            assert!(var("tenant").is_some(), "{file}: no tenant variable");
        }
        let mut ids = HashSet::new();
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file}: no panels");
        for p in panels {
            let title = p["title"].as_str().expect("a panel title");
            let id = p["id"].as_u64().expect("a panel id");
            assert!(ids.insert(id), "{file}: panel id {id} taken twice");
            assert!(
                ["timeseries", "stat", "gauge", "table"]
                    .contains(&p["type"].as_str().unwrap_or("")),
                "{file} / {title}: panel type"
            );
            let desc = p["description"].as_str().unwrap_or("");
            assert!(
                desc.contains("Bad") || desc.contains("bad"),
                "{file} / {title}: the description says what a bad value is"
            );
            assert_eq!(p["datasource"]["type"], "prometheus", "{file} / {title}");
            for k in ["h", "w", "x", "y"] {
                assert!(
                    p["gridPos"][k].as_u64().is_some(),
                    "{file} / {title}: gridPos.{k}"
                );
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file} / {title}: no targets");
            let mut refs = HashSet::new();
            for t in targets {
                let expr = t["expr"].as_str().expect("an expr");
                assert!(
                    refs.insert(t["refId"].as_str().expect("a refId")),
                    "{file} / {title}: refId"
                );
                assert!(
                    expr.contains("$job"),
                    "{file} / {title}: {expr} ignores $job"
                );
                if file == "aerie-tenant.json" {
                    assert!(
                        expr.contains("tenant=\"$tenant\""),
                        "{file} / {title}: {expr}"
                    );
                }
            }
        }
    }
}

#[test]
fn promtool_checks_and_passes_the_alert_rules_unit_tests() {
    let check = std::process::Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let tests = infra_dir().join("prometheus/tests");
    let files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .expect("infra/prometheus/tests")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    assert!(!files.is_empty(), "no promtool unit tests");
    let test = std::process::Command::new(tool("promtool"))
        .args(["test", "rules"])
        .args(&files)
        .output()
        .expect("run promtool");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "promtool test rules:\n{out}");
    // Each alert has a unit test of its own.
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a test file"))
        .collect();
    for (name, _, _) in ALERTS {
        assert!(
            text.contains(&format!("alertname: {name}\n")),
            "no promtool unit test for {name}"
        );
    }
}

/// Year, month and day `days` from now (UTC).
fn days_from_now(days: i64) -> (i32, u8, u8) {
    let d = (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date();
    (d.year(), d.month() as u8, d.day())
}

async fn connect(server: &Server, client_id: &str, token: &str) -> (RawClient, ReasonCode) {
    let (c, ack) =
        RawClient::connect_with(server.mqtt, with_password(V5, client_id, Some(token))).await;
    (c, ack.reason)
}

/// Sets `tenant`'s limits and waits until a new connection sees them (the
/// marker packet size in its CONNACK).
async fn set_limits(server: &Server, tenant: &Tenant, token: &str, mut limits: Value) {
    let marker = 123_457;
    limits["max_packet_size"] = json!(marker);
    server
        .api(
            "PATCH",
            &format!("/v1/admin/tenants/{}/limits", tenant.id),
            Some(ADMIN),
            Some(&limits),
        )
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = with_password(V5, "limits-probe", Some(token));
        let (c, ack) = RawClient::connect_with(server.mqtt, probe).await;
        let seen = ack.properties.maximum_packet_size == Some(marker);
        if ack.reason == ReasonCode::SUCCESS {
            c.disconnect().await;
        }
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "the limits never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` QoS 1 PUBLISHes on `topic`, 50 in flight at most; their PUBACK reasons.
async fn publish_qos1(c: &mut RawClient, topic: &str, n: u16) -> Vec<ReasonCode> {
    let mut reasons = vec![];
    let mut next = 1u16;
    while next <= n {
        let batch: Vec<u16> = (next..=n.min(next + 49)).collect();
        for id in &batch {
            c.publish(topic, b"m", QoS::AtLeastOnce, false, Some(*id))
                .await;
        }
        for _ in &batch {
            match c.recv().await {
                Some(Packet::PubAck(a)) => reasons.push(a.reason),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        next += batch.len() as u16;
    }
    reasons
}

/// Publishes `n` QoS 0 and `n` QoS 1 messages on `t/a`, each QoS 1 one
/// acknowledged with success.
async fn publish_q0_and_q1(publisher: &mut RawClient, n: u16) {
    for i in 0..n {
        publisher
            .publish_acked("t/a", b"q0", QoS::AtMostOnce, false, i + 1)
            .await;
        let reason = publisher
            .publish_acked("t/a", b"q1", QoS::AtLeastOnce, false, i + 1)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
}

/// Parks a persistent session on `d/#` and publishes 8 KiB QoS 1 messages
/// to it, 16 in flight, until a PUBACK says the store could not keep one
/// (0x80 after `--store-ack-timeout`); waits until Prometheus saw the store
/// fail.
async fn fill_the_disk(server: &Server, prometheus: &Prometheus) {
    let instance = format!("instance=\"{}\"", server.http);
    // First samples before the fault (the counters are registered at 0).
    prometheus.wait_for(
        &format!("aerie_store_ack_timeouts_total{{{instance}}}"),
        Duration::from_secs(10),
    );
    let mut parked = aerie_e2e::raw::connect_packet(V5, "parked", true);
    parked.properties.session_expiry_interval = Some(3600);
    let (mut sub, _) = RawClient::connect_with(server.mqtt, parked).await;
    sub.subscribe(1, "d/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let (mut publisher, _) = RawClient::connect(server.mqtt, V5, "filler", true).await;
    let started = Instant::now();
    let mut next = 0u32;
    let mut outstanding = 0;
    'fill: loop {
        while outstanding < 16 {
            next += 1;
            let payload = aerie_testdb::tmpfs::incompressible(u64::from(next), 8 * 1024);
            let id = (next % 60_000 + 1) as u16;
            publisher
                .publish("d/x", &payload, QoS::AtLeastOnce, false, Some(id))
                .await;
            outstanding += 1;
        }
        match publisher.recv_within(Duration::from_secs(5)).await {
            Ok(Some(Packet::PubAck(ack))) if ack.reason.is_error() => break 'fill,
            Ok(Some(Packet::PubAck(_))) => outstanding -= 1,
            other => panic!("expected a PUBACK, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the disk never filled up ({next} sent)"
        );
    }
    prometheus.wait_for(
        &format!("aerie_store_failing{{{instance}}} == 1"),
        Duration::from_secs(10),
    );
    prometheus.wait_for(
        &format!("aerie_store_ack_timeouts_total{{{instance}}} > 0"),
        Duration::from_secs(10),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_of_the_embedded_shape_answers_a_real_prometheus() {
    // A certificate that expires in 7 days: AerieCertificateExpiresSoon.
    let (y, m, d) = days_from_now(7);
    let (cert, _) = TestCert::localhost_until(y, m, d);
    let server = cert
        .server_options()
        .anonymous(false)
        .env("AERIE_ADMIN_TOKEN", ADMIN)
        .start();
    let t = tenant(&server, "ops@example.com");
    let (token, _) = mint(&server, &t, json!({}));
    // Lifted rates (the free plan's 20 msg/s per client), small queue and
    // subscription limits to hit.
    let limits = json!({
        "connections": 5000, "connect_rate": 100000, "publish_rate_msgs": 100000,
        "client_publish_rate_msgs": 100000, "inflight": 64, "subscriptions_per_client": 2,
        "queued_messages": 5,
    });
    set_limits(&server, &t, &token, limits).await;
    // A target nobody serves: a broker that is down (AerieDown).
    let down = free_addr();
    // A store whose disk fills up, with a 1 s --store-ack-timeout
    // (AerieStoreErrors, AerieAcksHeldTooLong): a 4 MiB tmpfs, which only
    // root may mount; elsewhere those two are evaluated, not staged.
    let disk = Tmpfs::mount("4m");
    let full = disk.as_ref().map(|fs| {
        ServerOptions::default()
            .data_dir(fs.path().join("data"))
            .args(&[
                "--max-queued-messages",
                "1000000",
                "--store-ack-timeout",
                "1",
            ])
            .start()
    });
    let mut targets = vec![server.http, down];
    targets.extend(full.as_ref().map(|f| f.http));
    let prometheus = Prometheus::start(&[("aerie", targets)], &[rules_file()]);
    let tenant_series = format!(
        "aerie_tenant_limit_exceeded_total{{tenant=\"{}\", limit=\"subscriptions_per_client\"}}",
        t.id
    );
    // Counters must have a first sample before the faults: Prometheus
    // counts no increase into a series' first value.
    prometheus.wait_for(&tenant_series, Duration::from_secs(15));
    let (bad, reason) = connect(&server, "bad", "not-a-token").await;
    assert_ne!(reason, ReasonCode::SUCCESS);
    drop(bad);
    prometheus.wait_for("aerie_auth_failures_total", Duration::from_secs(10));

    // Messages in and out, QoS 0 and 1.
    let (mut sub, reason) = connect(&server, "sub", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        sub.subscribe(1, "t/#", QoS::AtLeastOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_1]
    );
    let (mut publisher, _) = connect(&server, "pub", &token).await;
    publish_q0_and_q1(&mut publisher, 20).await;
    for _ in 0..40 {
        let p = sub.recv_publish().await;
        if p.qos != QoS::AtMostOnce {
            sub.ack(&p).await;
        }
    }
    // An offline persistent session over its tenant's 5 queued messages:
    // the rest are dropped (queue_full), AerieMessagesDropped.
    let mut persistent = with_password(V5, "offline", Some(&token));
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(3600);
    let (mut offline, ack) = RawClient::connect_with(server.mqtt, persistent).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        offline.subscribe(1, "q/#", QoS::AtLeastOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_1]
    );
    offline.disconnect().await;
    let reasons = publish_qos1(&mut publisher, "q/a", 400).await;
    assert!(reasons.iter().all(|r| !r.is_error()), "{reasons:?}");

    // SUBSCRIBEs over the tenant's 2 subscriptions: AerieTenantAtLimit.
    let mut refused = 0;
    for i in 0..60u16 {
        let ack = sub
            .subscribe(i + 2, &format!("s/{i}"), QoS::AtMostOnce)
            .await;
        refused += ack.reasons.iter().filter(|r| r.is_error()).count();
    }
    assert!(refused >= 55, "{refused} SUBSCRIBEs refused");

    // A burst of refused authentications (AerieAuthFailureSpike: above 5/s
    // over 5 minutes) and of connections (AerieConnectionStorm: above 10/s
    // over a minute, more than a fifth of those connected).
    let bursts = [("not-a-token", 1600usize), (token.as_str(), 700)];
    for (password, n) in bursts {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..4 {
            let (addr, password) = (server.mqtt, password.to_owned());
            tasks.spawn(async move {
                for i in 0..n / 4 {
                    let c = with_password(V5, &format!("storm-{w}-{i}"), Some(&password));
                    let (c, _) = RawClient::connect_with(addr, c).await;
                    drop(c);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("a burst task");
        }
    }

    if let Some(full) = &full {
        fill_the_disk(full, &prometheus).await;
    }

    // Until Prometheus has scraped it all (tenant series: every 5 s).
    prometheus.wait_for(&format!("{tenant_series} >= 55"), Duration::from_secs(15));
    prometheus.wait_for(
        "sum(aerie_auth_failures_total) >= 1600",
        Duration::from_secs(10),
    );
    prometheus.wait_for(
        "sum(aerie_connections_total) >= 700",
        Duration::from_secs(10),
    );
    prometheus.wait_for("up == 0", Duration::from_secs(10));

    let mut failures = check_panels(&prometheus, "aerie-overview.json", &t.id);
    failures.extend(check_panels(&prometheus, "aerie-tenant.json", &t.id));
    failures.extend(check_alerts(&prometheus, Shape::Embedded, full.is_some()));
    let (_, body) = server.http_get("/metrics");
    failures.extend(check_metrics_text("aerie serve", &body));
    assert_none("the embedded shape", failures);
    drop(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_out_dashboard_and_alerts_answer_a_real_prometheus() {
    // NATS of its own: the test kills it (AerieNatsDisconnected).
    let mut nats = NatsServer::start();
    let prefix = unique_prefix();
    let control = Control::start(&nats.url(), &prefix, &[]);
    let mut a = Gateway::start(&nats.url(), &prefix);
    let mut b = Gateway::start(&nats.url(), &prefix);
    a.wait_ready();
    b.wait_ready();
    // The fault of AerieFactsStale: a gateway that watches another prefix's
    // facts (never ready; still scraped).
    let stale = Gateway::start(&nats.url(), &unique_prefix());
    let t = tenant(&control, "ops@example.com");
    let limits = json!({
        "connections": 5000, "connect_rate": 100000, "publish_rate_msgs": 100000,
        "client_publish_rate_msgs": 100000,
    });
    set_limits_enforced(&nats, &control, &prefix, &t, limits, &[&a, &b]).await;
    let (token, _) = mint(&control, &t, json!({}));
    a.wait_accepts(&token).await;
    b.wait_accepts(&token).await;
    let prometheus = Prometheus::start(
        &[("aerie", vec![control.http, a.http, b.http, stale.http])],
        &[rules_file()],
    );
    prometheus.wait_for("sum(aerie_nats_connected) == 4", Duration::from_secs(15));

    // A subscriber on B, a publisher on A: the backbone and the message log
    // (QoS 1 waits for JetStream).
    let (mut sub, reason) = b.connect_v5("sub", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        sub.subscribe(1, "t/#", QoS::AtLeastOnce).await.reasons,
        [ReasonCode::GRANTED_QOS_1]
    );
    let (mut publisher, _) = a.connect_v5("pub", &token).await;
    // The interest reaches A through NATS: wait until a message crosses.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish_acked("t/a", b"probe", QoS::AtMostOnce, false, 1)
            .await;
        if let Ok(Some(Packet::Publish(_))) = sub.recv_within(Duration::from_millis(200)).await {
            break;
        }
        assert!(Instant::now() < deadline, "no message crossed from A to B");
    }
    let reason = publisher
        .publish_acked("t/a", b"probe", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // A first sample of each counter before the traffic: Prometheus counts
    // no increase into a series' first value.
    for series in [
        "aerie_backbone_published_total",
        "aerie_backbone_received_total",
        "aerie_message_log_appends_total",
        "aerie_message_log_ack_wait_seconds_count",
        "aerie_backbone_latency_seconds_count",
    ] {
        prometheus.wait_for(series, Duration::from_secs(10));
    }
    publish_q0_and_q1(&mut publisher, 20).await;
    // Enough crossings for the sampled latency histogram (every 64th).
    for i in 0..200u16 {
        publisher
            .publish("t/a", &i.to_be_bytes(), QoS::AtMostOnce, false, None)
            .await;
    }
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while received < 240 {
        match sub.recv_within(Duration::from_secs(1)).await {
            Ok(Some(Packet::Publish(p))) => {
                received += 1;
                if p.qos != QoS::AtMostOnce {
                    sub.ack(&p).await;
                }
            }
            Ok(Some(_)) | Err(()) => {}
            Ok(None) => panic!("the subscriber was closed after {received} messages"),
        }
        assert!(Instant::now() < deadline, "{received} messages crossed");
    }
    prometheus.wait_for(
        "sum(aerie_backbone_received_total) >= 240",
        Duration::from_secs(10),
    );
    prometheus.wait_for(
        "sum(aerie_backbone_latency_seconds_count) >= 3",
        Duration::from_secs(10),
    );
    prometheus.wait_for(
        "sum(aerie_message_log_appends_total) >= 20",
        Duration::from_secs(10),
    );

    let mut failures = check_panels(&prometheus, "aerie-scaleout.json", &t.id);
    for (what, addr) in [("aerie control", control.http), ("aerie gateway", a.http)] {
        let body = aerie_e2e::http::send(addr, "GET", "/metrics", &[], "").body;
        failures.extend(check_metrics_text(what, &body));
    }
    // The fault: NATS goes away.
    nats.kill9();
    prometheus.wait_for("aerie_nats_connected == 0", Duration::from_secs(15));
    failures.extend(check_alerts(&prometheus, Shape::ScaleOut, false));
    assert_none("the scale-out shape", failures);
}
